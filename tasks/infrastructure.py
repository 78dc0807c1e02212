"""Step 1: verify the infrastructure, propose what provisioning would change, then apply it.

Proposing and applying are two tasks so that a person can approve in between (production):
on AWS the proposal is a CloudFormation change set that exists, unexecuted, until it is applied
or discarded.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import targets
from targets.base import InfrastructureChange, InfrastructureReport
from tasks.policy import RETRIES


@task(name="verify-infrastructure", timeout_seconds=120, cache_policy=NO_CACHE, **RETRIES)
def verify_infrastructure(environment: str) -> InfrastructureReport:
    """Every dependency reachable and the app database present, or a message naming what is not."""
    return targets.load_target(environment).verify()


@task(name="plan-infrastructure", timeout_seconds=900, cache_policy=NO_CACHE, **RETRIES)
def plan_infrastructure(environment: str) -> InfrastructureChange:
    """What provisioning would change, published as the artifact `infrastructure-<environment>`
    (on AWS: the change set's resource changes). Changes nothing."""
    change = targets.load_target(environment).plan_infrastructure()
    if not change.empty:
        create_markdown_artifact(
            key=f"infrastructure-{environment}",
            markdown=render_change(environment, change),
            description=f"Proposed infrastructure change of {environment}",
        )
    return change


def render_change(environment: str, change: InfrastructureChange) -> str:
    head, _, body = change.summary.partition("\n")
    lines = [f"# Infrastructure change proposed for {environment} ({change.target})", "", head]
    if body:
        lines += ["", "```", body, "```"]
    return "\n".join(lines) + "\n"


@task(name="provision-infrastructure", timeout_seconds=3600, cache_policy=NO_CACHE, **RETRIES)
def provision_infrastructure(
    environment: str, change: InfrastructureChange
) -> InfrastructureReport:
    """Apply exactly the proposed change; nothing when it is empty.

    What changed is published as the artifact `provision-<environment>`.
    """
    report = targets.load_target(environment).provision(change)
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


@task(name="discard-infrastructure-change", timeout_seconds=300, cache_policy=NO_CACHE, **RETRIES)
def discard_infrastructure_change(environment: str, change: InfrastructureChange) -> None:
    """A proposal nobody approved goes away (on AWS: the change set, and a new stack's empty
    shell)."""
    targets.load_target(environment).discard_infrastructure_change(change)
