"""The steps' retry policy: exponential backoff with jitter, only for failures that can pass.

A `ReleaseError` (bad input, a failed migration, a missing Dockerfile) fails the task at once: the
message says what to fix and retrying would only delay it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefect.tasks import exponential_backoff

from domain.errors import TransientError
from domain.retrying import JITTER, retrying, spread
from targets.runlog import run_logger

R = TypeVar("R")

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


# The same schedule, run inside one attempt of a task (`retried`). For the steps a release runs
# inside its transaction (deploy, edge): Prefect rolls the enclosing transaction back on every
# failed attempt of a task in it, retried or not (each attempt is its own child transaction, and
# a rolled-back child rolls back its parent). A Prefect retry there would switch the services
# already deployed back at the first hiccup, while the retry goes on deploying the next one.
DELAYS = (2.0, 4.0, 8.0)  # what RETRIES waits: exponential_backoff(backoff_factor=2), 3 retries


def in_transaction(attempt_seconds: float) -> dict[str, Any]:
    """Task options for a step run inside the release's transaction: no Prefect retries, and a
    timeout that gives each attempt of `retried` its whole `attempt_seconds`, plus the waits (as
    Prefect's retries gave each attempt its own timeout)."""
    waits = sum(DELAYS) * (1 + JITTER)
    return {"retries": 0, "timeout_seconds": attempt_seconds * (len(DELAYS) + 1) + waits}


def retry_delays(draws: Sequence[float]) -> list[float]:
    """The waits before each retry, given one uniform draw in [0, 1) per retry: each of DELAYS
    spread by ±JITTER, as Prefect spreads them."""
    return spread(DELAYS, draws)


def retried(step: Callable[[], R], what: str, sleep: Callable[[float], None] = time.sleep) -> R:
    """`step()`, retried after a transient failure (RETRYABLE) on RETRIES' schedule, each retry
    logged; anything else, or the last transient failure, is raised as it is."""
    return retrying(
        step,
        what,
        delays=DELAYS,
        warn=lambda line: run_logger().warning(line),
        transient=RETRYABLE,
        reason=lambda exc: f"{str(exc) or type(exc).__name__} (transient)",
        sleep=sleep,
    )
