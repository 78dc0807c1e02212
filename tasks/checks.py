"""Step 8: smoke checks against the public URLs, with httpx.

Checks probe for a short window rather than once, so a version that passes its health check at
start and fails seconds later is caught here, not by users.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

import targets
from targets.base import Frozen, ProbeSpec
from targets.errors import ChecksFailed


class CheckReport(Frozen):
    version: str
    probes: int
    rounds: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def field(document: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def judge(probe: ProbeSpec, url: str, version: str, status: int, body: Any) -> str | None:
    """The problem with one answer, or None if it is what a healthy release serves."""
    if status != 200:
        return f"{url} answered HTTP {status}"
    if probe.version_field is None:
        return None
    served = field(body, probe.version_field)
    if served != version:
        return f"{url} serves version {served!r} at `{probe.version_field}`, expected {version!r}"
    return None


def probe_once(client: httpx.Client, probe: ProbeSpec, base_url: str, version: str) -> str | None:
    url = base_url.rstrip("/") + probe.path
    try:
        response = client.get(url)
    except httpx.TransportError as exc:
        return f"{url} unreachable ({exc.__class__.__name__})"
    body: Any = None
    if probe.version_field is not None:
        try:
            body = response.json()
        except ValueError:
            return f"{url} did not answer JSON (HTTP {response.status_code})"
    return judge(probe, url, version, response.status_code, body)


@task(name="smoke-check", cache_policy=NO_CACHE, timeout_seconds=600)
def smoke_check(environment: str, version: str, window_seconds: float | None = None) -> CheckReport:
    """Probe every configured URL repeatedly for the check window; any failure fails the step.

    Not retried: a retry would turn a real failure into a flaky pass.
    """
    spec = targets.load_spec(environment)
    checks = spec.checks
    window = checks.window_seconds if window_seconds is None else window_seconds
    urls = {s.name: s.public_url for s in spec.services}
    failures: list[str] = []
    rounds = 0
    deadline = time.monotonic() + window
    with httpx.Client(timeout=checks.request_timeout_seconds) as client:
        while True:
            rounds += 1
            for probe in checks.probes:
                problem = probe_once(client, probe, urls[probe.service], version)
                if problem and problem not in failures:
                    failures.append(problem)
            if failures or time.monotonic() >= deadline:
                break
            time.sleep(checks.interval_seconds)
    report = CheckReport(
        version=version, probes=len(checks.probes), rounds=rounds, failures=tuple(failures)
    )
    if failures:
        raise ChecksFailed(f"smoke checks failed for {version}: " + "; ".join(failures))
    get_run_logger().info(f"smoke checks passed: {len(checks.probes)} probes x {rounds} rounds")
    return report
