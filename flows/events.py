"""Events the flows emit. Automations (rollback on checks failed) match on these names."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

RELEASE_STARTED = "flowmasters.release.started"
RELEASE_SUCCEEDED = "flowmasters.release.succeeded"
RELEASE_FAILED = "flowmasters.release.failed"
CHECKS_FAILED = "flowmasters.release.checks-failed"


def environment_resource(environment: str, version: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"flowmasters.environment.{environment}",
        "prefect.resource.name": environment,
        "environment": environment,
        "version": version,
    }


def emit(event: str, environment: str, version: str, **payload: Any) -> None:
    emit_event(event=event, resource=environment_resource(environment, version), payload=payload)
