"""One request to a service that may fail for a moment, retried where it failed.

A registry answering 503 to one request in three, or a connection refused while a service
restarts, should cost that request a short wait, not the step its retry policy (seconds, and the
work of the whole step again) and not the release. The retry is bounded, spread by jitter so that
clients do not retry in step, and logged, so a person sees a flaky dependency before it fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from domain.retrying import retrying, spread
from targets.runlog import run_logger

R = TypeVar("R")

# Waits before each retry of one request: short, since a request is cheap and a transient answer
# usually passes at once; five attempts in about 4 s (a request failing 30 % of the time then
# fails all five 0.24 % of the time). Anything longer is the step's retry policy.
REQUEST_DELAYS = (0.25, 0.5, 1.0, 2.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def request_delays(draws: Sequence[float]) -> list[float]:
    """The waits before each retry, given one uniform draw in [0, 1) per retry."""
    return spread(REQUEST_DELAYS, draws)


def with_retries(
    send: Callable[[], R],
    what: str,
    failed: Callable[[R], str | None],
    transient: tuple[type[BaseException], ...],
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """`send()`, retried on REQUEST_DELAYS while it raises one of `transient` or `failed(answer)`
    says why the answer may pass by itself (a 503), each retry logged to the run. The last answer
    is returned, the last error raised: the caller decides what they mean."""
    return retrying(
        send,
        what,
        delays=REQUEST_DELAYS,
        warn=lambda line: run_logger().warning(line),
        transient=transient,
        failed=failed,
        sleep=sleep,
    )


def status_failure(status: int) -> str | None:
    """Why an HTTP status may pass by itself (a retry may get another answer), else None."""
    return f"answered {status}" if status in RETRY_STATUSES else None
