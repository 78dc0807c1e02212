"""Step 1: verify (and where the target can, provision) the infrastructure."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
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
    """Create what the environment lacks; changes nothing when everything is in place.

    What changed (on AWS: the executed change set's resource changes) is published as the
    artifact `provision-<environment>`.
    """
    report = targets.load_target(environment).provision()
    if report.changed:
        lines = [f"# Provisioned {environment} ({report.target})", ""]
        lines += [f"- changed: {change}" for change in report.changed]
        lines += [f"- {f.component}: {f.detail}" for f in report.findings]
        create_markdown_artifact(
            key=f"provision-{environment}",
            markdown="\n".join(lines) + "\n",
            description=f"What provisioning changed in {environment}",
        )
    return report
