"""Step 8: smoke checks against the public URLs, with httpx.

Checks probe for a short window rather than once, so a version that passes its health check at
start and fails seconds later is caught here, not by users. What counts as a good answer is
`domain.checks.judge`.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from domain.checks import CheckReport, ProbeSpec, expected_versions, judge
from domain.environment import EnvironmentSpec
from domain.errors import ChecksFailed


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


def describe_versions(versions: dict[str, str]) -> str:
    """`v2`, or `backend v1, frontend v2` when a release kept a service at its version."""
    if len(set(versions.values())) == 1:
        return next(iter(versions.values()))
    return ", ".join(f"{service} {version}" for service, version in versions.items())


@task(name="smoke-check", cache_policy=NO_CACHE, timeout_seconds=600)
def smoke_check(
    spec: EnvironmentSpec,
    versions: dict[str, str],
    window_seconds: float | None = None,
    only: str | None = None,
    urls: dict[str, str] | None = None,
) -> CheckReport:
    """Probe every configured URL repeatedly for the check window; any failure fails the step.
    `versions`: what each service must serve (a release keeps an unchanged service's version).
    `only`: that service's probes alone; `urls`: base URLs instead of the public ones (a
    canary's own slot).

    Not retried: a retry would turn a real failure into a flaky pass.
    """
    checks = spec.checks
    window = checks.window_seconds if window_seconds is None else window_seconds
    urls = {s.name: s.public_url for s in spec.services} | (urls or {})
    expected = [
        (probe, wanted)
        for probe, wanted in expected_versions(checks.probes, versions)
        if only is None or probe.service == only
    ]
    version = describe_versions(versions)
    failures: list[str] = []
    rounds = 0
    deadline = time.monotonic() + window
    with httpx.Client(timeout=checks.request_timeout_seconds) as client:
        while True:
            rounds += 1
            for probe, wanted in expected:
                problem = probe_once(client, probe, urls[probe.service], wanted)
                if problem and problem not in failures:
                    failures.append(problem)
            if failures or time.monotonic() >= deadline:
                break
            time.sleep(checks.interval_seconds)
    report = CheckReport(
        version=version, probes=len(expected), rounds=rounds, failures=tuple(failures)
    )
    if failures:
        raise ChecksFailed(f"smoke checks failed for {version}: " + "; ".join(failures))
    get_run_logger().info(f"smoke checks passed: {len(expected)} probes x {rounds} rounds")
    return report
