"""Step 7: the CDN and the load balancer."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.results import DeployResult, EdgeResult
from tasks.retries import in_transaction, retried


# Run inside the release's transaction: retried within the attempt (see tasks/retries.py). Each
# attempt gets more than a CDN invalidation's budget (AWS: 900 s), so the target's message, which
# names the invalidation, is the one a person sees.
@task(name="update-edge", cache_policy=NO_CACHE, **in_transaction(960))
def update_edge(env: Environment, deployed: list[DeployResult]) -> EdgeResult:
    """Invalidate the CDN where there is one; confirm the load balancer targets the new version."""
    return retried(lambda: env.connect().update_edge(deployed), "edge")
