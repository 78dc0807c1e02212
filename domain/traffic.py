"""Judging a version by its users' traffic: what reached its servers, against bounds and against
the version that served beside it (a canary's stable) or before it (a blue/green bake).

Pure: the readings come from a metrics source (Prometheus on the Docker host, reading HAProxy's
exporter); these functions only decide.

HAProxy gives no percentile. Per server it counts answers by class (2xx..5xx) and keeps the mean
response time of its last 1024 answers, a moving average in which each answer weighs 1/1024.
The slot's average still holds the answers of whatever ran there before (the version before the
previous one), so the mean over a window is taken out of the two readings at its ends:
`window_mean`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from domain.frozen import Frozen

AVERAGE_OVER = 1024  # HAProxy's moving average: each answer weighs 1/1024


class TrafficBounds(Frozen):
    """When a version's traffic fails it: its share of 5xx answers, and its latency against the
    version it is compared with. Judged only past `min_requests`; below that, the probes decide
    and the report says so."""

    max_error_share: float = Field(
        default=0.01, ge=0, le=1, description="Most 5xx answers allowed, as a share (0.01: 1 %)."
    )
    max_latency_ratio: float = Field(
        default=1.5,
        ge=1,
        description="Most mean response time allowed, as a multiple of the compared version's.",
    )
    min_latency_increase_seconds: float = Field(
        default=0.1,
        ge=0,
        description="A slower mean breaks the ratio only when it is also this much slower: tens "
        "of milliseconds on a busy machine (a new container's first answers) are noise, not a "
        "regression.",
    )
    min_latency_requests: int = Field(
        default=200,
        ge=1,
        description="Fewest answers of each version to compare their latencies: HAProxy's "
        "average moves in whole milliseconds, so the mean taken out of it over fewer answers "
        "is off by more than 5 ms.",
    )
    min_requests: int = Field(
        default=50, ge=1, description="Fewest answers a version needs to be judged by traffic."
    )


@dataclass(frozen=True)
class Reading:
    """One server's counters at one moment: answers per class (`2xx`, `5xx`, ...) since HAProxy
    started, and its moving-average response time in seconds."""

    at: float
    answers: dict[str, float]
    mean_seconds: float


@dataclass(frozen=True)
class Traffic:
    """What reached one version's servers in a window."""

    requests: int
    errors: int
    latency_seconds: float | None  # mean response time over the window, when it can be known

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        latency = (
            f", mean {self.latency_seconds * 1000:.0f} ms"
            if self.latency_seconds is not None
            else ""
        )
        return f"{self.requests} requests, {self.errors} 5xx ({self.error_share:.1%}){latency}"


def window_mean(
    before: float, after: float, requests: int, weight: int = AVERAGE_OVER
) -> float | None:
    """The mean response time of the `requests` answered between two readings of a moving
    average (each answer moves it by 1/`weight` of the difference). None without answers."""
    if requests <= 0:
        return None
    kept = (1 - 1 / weight) ** requests  # what is left of `before` in `after`
    return max(0.0, (after - before * kept) / (1 - kept))


def traffic_between(before: Reading, after: Reading) -> Traffic:
    """What one server answered between two readings. When its counters went back (HAProxy was
    reloaded in between: its new process counts from zero, and its average starts from zero),
    what it answered since the reload: the part of the window before it is lost."""
    classes = set(before.answers) | set(after.answers)
    delta = {c: after.answers.get(c, 0) - before.answers.get(c, 0) for c in classes}
    if any(d < 0 for d in delta.values()):
        before = Reading(before.at, {}, 0.0)
        delta = dict(after.answers)
    requests = round(sum(delta.values()))
    errors = round(delta.get("5xx", 0))
    return Traffic(requests, errors, window_mean(before.mean_seconds, after.mean_seconds, requests))


@dataclass(frozen=True)
class Verdict:
    """`passed` True or False when the traffic decided; None when it could not (no source, too
    few requests): then the probes decide, and `reason` says why."""

    passed: bool | None
    reason: str


def broken_already(
    version: str,
    new: Traffic | None,
    bounds: TrafficBounds,
    expected_requests: float,
    compared: Traffic | None = None,
    against: str = "the stable version",
) -> Verdict | None:
    """Before a step has `min_requests`: a failing verdict when the version's 5xx so far exceed
    what the bound allows over the whole step (`expected_requests`, projected from its rate so
    far), so that whatever follows cannot bring it back under; else None (wait and see). A
    version failing every request is stopped at its first readings, a stray error is not."""
    if new is None or new.requests >= bounds.min_requests:
        return None
    expected = max(expected_requests, bounds.min_requests)
    if new.errors <= bounds.max_error_share * expected:
        return None
    return Verdict(
        False,
        f"error share already above the bound {bounds.max_error_share:.1%} for the step: "
        f"{new.errors} 5xx of {new.requests} requests so far, of ~{expected:.0f} expected "
        f"({version}: {new.describe()}"
        + (f"; {against}: {compared.describe()}" if compared is not None else "")
        + ")",
    )


def judge_traffic(
    version: str,
    new: Traffic | None,
    compared: Traffic | None,
    bounds: TrafficBounds,
    against: str = "the stable version",
) -> Verdict:
    """The traffic's verdict on `version` (its answers `new`) against `bounds` and against
    `compared`, what the other version answered (`against` names it in the reason)."""
    if new is None:
        return Verdict(None, f"no traffic figures for {version}")
    if new.requests < bounds.min_requests:
        return Verdict(
            None,
            f"{version}: {new.requests} requests, fewer than the {bounds.min_requests} needed to "
            "judge by traffic",
        )
    ours = f"{version}: {new.describe()}"
    theirs = f"{against}: {compared.describe()}" if compared is not None else ""
    worse_than_compared = compared is None or new.error_share > compared.error_share
    if new.error_share > bounds.max_error_share and worse_than_compared:
        return Verdict(
            False,
            f"error share {new.error_share:.1%} above the bound {bounds.max_error_share:.1%} "
            f"({ours}" + (f"; {theirs}" if theirs else "") + ")",
        )
    if (
        compared is not None
        and min(new.requests, compared.requests) >= bounds.min_latency_requests
        and new.latency_seconds is not None
        and compared.latency_seconds is not None
    ):
        limit = compared.latency_seconds * bounds.max_latency_ratio
        slower = new.latency_seconds - compared.latency_seconds
        if new.latency_seconds > limit and slower > bounds.min_latency_increase_seconds:
            return Verdict(
                False,
                f"mean latency {new.latency_seconds * 1000:.0f} ms above "
                f"{bounds.max_latency_ratio:g} x {against}'s "
                f"{compared.latency_seconds * 1000:.0f} ms ({ours}; {theirs})",
            )
    return Verdict(True, ours + (f"; {theirs}" if theirs else ""))
