from datetime import UTC, datetime, timedelta

import pytest

from flows.lock import (
    ENDED_GRACE_SECONDS,
    RunSpan,
    earlier_release,
    holder_is_gone,
    wait_before_freeing,
)


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


T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def span(id_: str, state: str, started: float, ended: float | None = None) -> RunSpan:
    at = T0 + timedelta(seconds=started)
    return RunSpan(id_, f"run-{id_}", state, at, T0 + timedelta(seconds=ended) if ended else None)


class TestEarlierRelease:
    ME = span("m", "RUNNING", 10)

    @pytest.mark.parametrize(
        ("others", "wanted"),
        [
            ([], None),
            ([ME], None),  # itself
            ([span("a", "RUNNING", 5)], "a"),  # started first, still running
            ([span("a", "COMPLETED", 5, 30)], "a"),  # started first, released after I started
            ([span("a", "COMPLETED", 1, 8)], None),  # ended before I started: sequential
            ([span("a", "FAILED", 5, 30)], None),  # failed or refused: changed nothing
            ([span("a", "CRASHED", 5, 30)], None),  # its rollback is the automation's
            ([span("z", "RUNNING", 12)], None),  # started after me: it is refused, not me
            ([span("a", "RUNNING", 10)], "a"),  # same moment: the smaller id goes first
            ([span("z", "RUNNING", 10)], None),
            ([span("z", "RUNNING", 12), span("b", "COMPLETED", 7, 20)], "b"),
        ],
        ids=[
            "alone",
            "itself",
            "earlier-running",
            "earlier-completed-since",
            "earlier-ended-before",
            "earlier-failed",
            "earlier-crashed",
            "later-running",
            "tie-smaller-id",
            "tie-larger-id",
            "several",
        ],
    )
    def test_the_first_to_start_goes_on(self, others, wanted):
        found = earlier_release(self.ME, others)

        assert (found.id if found else None) == wanted
