"""Step 1: verify (and where the target can, provision) the infrastructure."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

import targets
from targets.base import InfrastructureReport
from tasks.policy import RETRIES


@task(name="verify-infrastructure", timeout_seconds=120, cache_policy=NO_CACHE, **RETRIES)
def verify_infrastructure(environment: str) -> InfrastructureReport:
    """Every dependency reachable and the app database present, or a message naming what is not."""
    return targets.load_target(environment).verify()


@task(name="provision-infrastructure", timeout_seconds=3600, cache_policy=NO_CACHE, **RETRIES)
def provision_infrastructure(environment: str) -> InfrastructureReport:
    """Create what the environment lacks; changes nothing when everything is in place."""
    return targets.load_target(environment).provision()
