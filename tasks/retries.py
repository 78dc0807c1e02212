"""The steps' retry policy: exponential backoff with jitter, only for failures that can pass.

A `ReleaseError` (bad input, a failed migration, a missing Dockerfile) fails the task at once: the
message says what to fix and retrying would only delay it.
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from domain.errors import TransientError

RETRYABLE = (TransientError, ConnectionError, TimeoutError)


def is_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry only transient failures.

    The engine hands over `Failed(data=exception)`; reading `.data` works for sync and async tasks
    alike (`state.result()` would be a coroutine in an async task).
    """
    return isinstance(state.data, RETRYABLE)


RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_retryable,
}
