"""Step 1: verify the infrastructure, propose what provisioning would change, then apply it.

Proposing and applying are two tasks so that a person can approve in between (production):
on AWS the proposal is a CloudFormation change set that exists, unexecuted, until it is applied
or discarded.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.results import InfrastructureChange, InfrastructureReport
from tasks.retries import RETRIES


@task(name="verify-infrastructure", timeout_seconds=120, cache_policy=NO_CACHE, **RETRIES)
def verify_infrastructure(env: Environment) -> InfrastructureReport:
    """Every dependency reachable and the app database present, or a message naming what is not."""
    return env.connect().verify()


@task(name="plan-infrastructure", timeout_seconds=900, cache_policy=NO_CACHE, **RETRIES)
def plan_infrastructure(env: Environment) -> InfrastructureChange:
    """What provisioning would change, published as the artifact `infrastructure-<environment>`
    (on AWS: the change set's resource changes). Changes nothing."""
    change = env.connect().plan_infrastructure()
    if not change.empty:
        create_markdown_artifact(
            key=f"infrastructure-{env.name}",
            markdown=render_change(env.name, change),
            description=f"Proposed infrastructure change of {env.name}",
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
    env: Environment, change: InfrastructureChange
) -> InfrastructureReport:
    """Apply exactly the proposed change; nothing when it is empty.

    What changed is published as the artifact `provision-<environment>`.
    """
    report = env.connect().provision(change)
    if report.changed:
        lines = [f"# Provisioned {env.name} ({report.target})", ""]
        lines += [f"- changed: {change}" for change in report.changed]
        lines += [f"- {f.component}: {f.detail}" for f in report.findings]
        create_markdown_artifact(
            key=f"provision-{env.name}",
            markdown="\n".join(lines) + "\n",
            description=f"What provisioning changed in {env.name}",
        )
    return report


@task(name="discard-infrastructure-change", timeout_seconds=300, cache_policy=NO_CACHE, **RETRIES)
def discard_infrastructure_change(env: Environment, change: InfrastructureChange) -> None:
    """A proposal nobody approved goes away (on AWS: the change set, and a new stack's empty
    shell)."""
    env.connect().discard_infrastructure_change(change)
