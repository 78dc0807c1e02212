import pytest

from flows.lock import ENDED_GRACE_SECONDS, holder_is_gone, wait_before_freeing


@pytest.mark.parametrize("state", ["CRASHED", "FAILED", "CANCELLED", "COMPLETED"])
def test_a_run_that_ended_a_moment_ago_holds_nothing(state):
    assert holder_is_gone(state, ENDED_GRACE_SECONDS)


@pytest.mark.parametrize(
    ("state", "ago"),
    [
        ("RUNNING", 600.0),  # alive: its lease is its own
        ("PENDING", 600.0),
        ("PAUSED", 600.0),  # waiting for an approval, still holding the lock on purpose
        ("CRASHED", ENDED_GRACE_SECONDS - 0.5),  # just reported: give its process a moment
        (None, None),
    ],
)
def test_a_run_that_may_still_be_alive_keeps_its_lease(state, ago):
    assert not holder_is_gone(state, ago)


def test_a_crashed_run_s_lease_is_freed_once_its_grace_has_passed():
    assert wait_before_freeing("CRASHED", 1.0) == ENDED_GRACE_SECONDS - 1.0
    assert wait_before_freeing("CRASHED", ENDED_GRACE_SECONDS + 5) == 0.0
    assert wait_before_freeing("CANCELLED", 60.0) == 0.0


@pytest.mark.parametrize("state", ["RUNNING", "PAUSED", "COMPLETED", "FAILED", None])
def test_a_run_alive_or_ended_on_its_own_keeps_or_released_its_lease_itself(state):
    """Completed and Failed runs ran their `finally` and released it; a live one holds it."""
    assert wait_before_freeing(state, 600.0) is None
