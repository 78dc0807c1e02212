"""One call that may fail for a moment, retried: bounded, spread by jitter, each retry told.

The one retry loop of the product. Its users differ only in their schedule and their voice: a
registry or engine request (targets/request_retries.py: five attempts in about 4 s, logged to the
run), a step inside the release's transaction (tasks/retries.py: the steps' 2, 4, 8 s) and the
main command's requests to the Prefect server (flows/cli.py: about 30 s, told on stderr, since
that process does not import Prefect).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

R = TypeVar("R")

JITTER = 0.5  # each wait is spread by half either way, as Prefect spreads a task's retries


def spread(delays: Sequence[float], draws: Sequence[float], jitter: float = JITTER) -> list[float]:
    """The waits before each retry, given one uniform draw in [0, 1) per retry: each delay
    spread by ±jitter, so that clients failing together do not retry together."""
    return [d * (1 - jitter + 2 * jitter * u) for d, u in zip(delays, draws, strict=True)]


def error_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def never(_: object) -> None:
    return None


def retrying(
    call: Callable[[], R],
    what: str,
    *,
    delays: Sequence[float],
    warn: Callable[[str], None],
    transient: tuple[type[BaseException], ...] = (),
    failed: Callable[[R], str | None] = never,
    reason: Callable[[BaseException], str] = error_reason,
    sleep: Callable[[float], None] = time.sleep,
) -> R:
    """`call()`, retried while it raises one of `transient`, or while `failed(answer)` says why
    the answer may pass by itself (a 503). One retry per delay, each told through `warn`
    ("<what>: <why>; attempt 2 of 5 in 0.31 s"). The last answer is returned and the last error
    raised: the caller decides what they mean."""
    waits = spread(delays, [random.random() for _ in delays])
    for attempt, wait in enumerate([*waits, None], start=1):
        try:
            answer = call()
        except transient as exc:
            if wait is None:
                raise
            why = reason(exc)
        else:
            why = failed(answer)
            if why is None or wait is None:
                return answer
        warn(f"{what}: {why}; attempt {attempt + 1} of {len(delays) + 1} in {wait:.2f} s")
        sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")
