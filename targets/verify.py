"""The verify rule, the same on every target: look at every component, then decide once.

Each probe returns a line saying what it found, or raises a `ReleaseError` (a person must act: a
database that does not exist) or a `TransientError` (it may pass by itself: an engine restarting).
Verify fails when any probe failed, and names every failure. It fails with a TransientError, so the
task retries, only when every failure may pass by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from domain.errors import ReleaseError, TransientError
from domain.results import Finding, InfrastructureReport

Probe = tuple[str, Callable[[], str]]  # (component, what it found)
Guard = Callable[[str], AbstractContextManager[object]]  # turns SDK errors into ours


def look(component: str, probe: Callable[[], str], guard: Guard) -> tuple[Finding, bool]:
    """One component's finding, and whether its failure (if any) may pass by itself."""
    try:
        with guard(component):
            return Finding(component=component, ok=True, detail=str(probe())), False
    except (ReleaseError, TransientError) as exc:
        finding = Finding(component=component, ok=False, detail=str(exc))
        return finding, isinstance(exc, TransientError)


def inspect(
    target: str,
    environment: str,
    probes: list[Probe],
    where: str = "",
    guard: Guard = lambda _: nullcontext(),
) -> InfrastructureReport:
    """Run every probe; the report when all passed, else one error naming each failure."""
    results = [look(component, probe, guard) for component, probe in probes]
    report = InfrastructureReport(target=target, findings=tuple(f for f, _ in results))
    if not report.missing:
        return report
    problems = "; ".join(f"{f.component}: {f.detail}" for f in report.missing)
    message = f"environment '{environment}' is not ready{where}: {problems}"
    if all(transient for finding, transient in results if not finding.ok):
        raise TransientError(message)
    raise ReleaseError(message)
