"""Step 7: the CDN and the load balancer."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.results import DeployResult, EdgeResult
from tasks.retries import IN_TRANSACTION, retried


# Run inside the release's transaction: retried within the attempt (see tasks/retries.py).
@task(name="update-edge", cache_policy=NO_CACHE, timeout_seconds=900, **IN_TRANSACTION)
def update_edge(env: Environment, deployed: list[DeployResult]) -> EdgeResult:
    """Invalidate the CDN where there is one; confirm the load balancer targets the new version."""
    return retried(lambda: env.connect().update_edge(deployed), "edge")
