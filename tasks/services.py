"""Steps 5 and 6: deploy a service. Release and rollback both use this one primitive."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

import targets
from targets.base import DeployResult, Revision
from tasks.policy import RETRIES


@task(name="read-live-revisions", cache_policy=NO_CACHE, timeout_seconds=120, **RETRIES)
def read_live_revisions(environment: str, services: list[str]) -> dict[str, Revision | None]:
    """What each service runs now: the rollback target if this release goes wrong."""
    target = targets.load_target(environment)
    return {name: target.live_revision(name) for name in services}


@task(
    name="deploy-service",
    task_run_name="deploy-{service}-{version}",
    cache_policy=NO_CACHE,
    timeout_seconds=900,
    **RETRIES,
)
def deploy_service(environment: str, service: str, image: str, version: str) -> DeployResult:
    """Start beside the old, wait healthy, switch traffic, drain, keep the old. Idempotent."""
    return targets.load_target(environment).deploy_service(service, image, version)
