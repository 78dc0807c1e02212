"""Steps 5 and 6: deploy a service. Release and rollback both use this one primitive."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.records import ReleaseRecord
from domain.results import DeployResult, Revision
from tasks.retries import RETRIES


@task(name="read-live-revisions", cache_policy=NO_CACHE, timeout_seconds=120, **RETRIES)
def read_live_revisions(env: Environment, services: list[str]) -> dict[str, Revision | None]:
    """What each service runs now: the rollback target if this release goes wrong."""
    target = env.connect()
    return {name: target.live_revision(name) for name in services}


@task(
    name="deploy-service",
    task_run_name="deploy-{service}-{version}",
    cache_policy=NO_CACHE,
    # Above the targets' own deploy budgets (AWS: 900 s), so their message, naming the service
    # and its last events, is the one a person sees.
    timeout_seconds=1200,
    **RETRIES,
)
def deploy_service(env: Environment, service: str, image: str, version: str) -> DeployResult:
    """Start beside the old, wait healthy, switch traffic, drain, keep the old. Idempotent."""
    return env.connect().deploy_service(service, image, version)


@task(name="resolve-image", cache_policy=NO_CACHE, timeout_seconds=120, **RETRIES)
def resolve_image(env: Environment, service: str, version: str, record: ReleaseRecord) -> str:
    """The image of `service` at `version`: from the record when it names it, else the registry."""
    previous = record.previous.get(service)
    if previous is not None and previous.version == version:
        return previous.image
    return env.connect().image_reference(service, version)
