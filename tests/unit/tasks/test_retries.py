import pytest
from prefect.states import Failed

from domain.errors import ChecksFailed, ReleaseError, TransientError
from tasks.retries import is_retryable


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
