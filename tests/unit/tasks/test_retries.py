import pytest
from prefect.states import Failed

from domain.errors import ChecksFailed, ReleaseError, TransientError
from tasks.edge import update_edge
from tasks.retries import DELAYS, in_transaction, is_retryable, retried, retry_delays
from tasks.services import deploy_service


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransientError("registry restarting"), True),
        (ConnectionError("reset by peer"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError("socket timed out"), True),
        (ReleaseError("no Dockerfile"), False),
        (ChecksFailed("smoke checks failed"), False),
        (ValueError("bad value"), False),
    ],
)
def test_only_transient_failures_are_retried(error, expected):
    # Prefect's task engine hands retry_condition_fn a Failed state holding the exception.
    state = Failed(data=error, message=f"Task run encountered an exception: {error!r}")

    assert is_retryable(None, None, state) is expected


def test_retry_delays_spread_each_wait_by_half_either_way():
    assert retry_delays([0.0, 0.5, 0.999]) == pytest.approx([1.0, 4.0, 11.992])


class Flaky:
    """A step that raises each of `errors` in turn, then answers "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.attempts = 0

    def __call__(self) -> str:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_retried_in_one_attempt_until_a_transient_failure_passes():
    step, waits = Flaky(TransientError("engine restarting"), ConnectionError()), []

    assert retried(step, "deploy backend v2", sleep=waits.append) == "done"
    assert step.attempts == 3
    assert [d / 2 <= w <= d * 1.5 for d, w in zip(DELAYS, waits, strict=False)] == [True, True]


def test_retried_raises_a_release_error_at_once():
    step, waits = Flaky(ReleaseError("never became healthy")), []

    with pytest.raises(ReleaseError, match="never became healthy"):
        retried(step, "deploy backend v2", sleep=waits.append)
    assert (step.attempts, waits) == (1, [])


def test_retried_gives_up_after_the_last_retry():
    step, waits = Flaky(*[TimeoutError("socket timed out")] * 10), []

    with pytest.raises(TimeoutError):
        retried(step, "edge", sleep=waits.append)
    assert step.attempts == len(DELAYS) + 1 and len(waits) == len(DELAYS)


def test_a_step_in_the_transaction_has_no_prefect_retries_and_time_for_every_attempt():
    assert in_transaction(1200) == {"retries": 0, "timeout_seconds": 4 * 1200 + 21.0}
    for step, attempt_budget in ((deploy_service, 1200), (update_edge, 960)):
        assert step.retries == 0
        assert step.timeout_seconds == in_transaction(attempt_budget)["timeout_seconds"]
