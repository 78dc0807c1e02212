"""Events the flows emit. Automations (rollback on checks failed) match on these names."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

RELEASE_STARTED = "flowmasters.release.started"
RELEASE_SUCCEEDED = "flowmasters.release.succeeded"
RELEASE_FAILED = "flowmasters.release.failed"
CHECKS_FAILED = "flowmasters.release.checks-failed"
# A canary's steps: weight, each version's requests, error share and latency, the verdict.
CANARY_STEP = "flowmasters.canary.step"
CANARY_PROMOTED = "flowmasters.canary.promoted"
CANARY_ABORTED = "flowmasters.canary.aborted"


def environment_resource(environment: str, version: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"flowmasters.environment.{environment}",
        "prefect.resource.name": environment,
        "environment": environment,
        "version": version,
    }


ROLLBACK_STARTED = "flowmasters.rollback.started"
ROLLBACK_SUCCEEDED = "flowmasters.rollback.succeeded"
ROLLBACK_FAILED = "flowmasters.rollback.failed"


def emit(
    event: str,
    environment: str,
    version: str,
    labels: dict[str, str] | None = None,
    **payload: Any,
) -> None:
    """Emit `event` about the environment. `labels` are matchable by automation triggers (a
    trigger can match resource labels, not payload fields); the payload is for people."""
    resource = {**environment_resource(environment, version), **(labels or {})}
    emit_event(event=event, resource=resource, payload=payload)
