"""What the release and rollback flows share: deploying in order then the edge, a person's
approval, and the failure report.

A rollback is a deploy of earlier revisions, so both flows go through `deploy_in_order` and the
one deploy task (start beside, health-gate, switch, drain, keep).
"""

from __future__ import annotations

from typing import NamedTuple

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run

from blocks.environment import Environment
from domain.results import DeployResult, Revision
from flows.canary import canary_service
from flows.forms import Approval
from flows.report import Report
from tasks.edge import update_edge
from tasks.services import deploy_service


class Rollout(NamedTuple):
    """One service to deploy: `image` at `version`; no image leaves the service as it is."""

    service: str
    version: str
    image: str | None
    before: Revision | None = None  # what served before the release, when known (the undo's)
    kept: bool = False  # it serves `image` already, built from the release's source: no deploy


def version_of(revision: Revision | None) -> str:
    return revision.version if revision is not None else "nothing"


def deploy_in_order(
    env: Environment,
    rollouts: list[Rollout],
    report: Report,
    verb: str = "deploy",
    keep_previous: bool = False,
    deployed: list[DeployResult] | None = None,
    canaries: tuple[str, ...] = (),
) -> list[DeployResult]:
    """Deploy each rollout in the order given, one report row each, then check the edge (the
    load balancer serves the new revisions; the CDN is invalidated) if anything was deployed.
    `keep_previous`: what served before keeps running out of rotation (see tasks/services.py).
    `deployed` collects each result as it comes, so a caller still has them when a later step
    fails. The services in `canaries` go through their canary (flows/canary.py) and end
    promoted by the same deploy, or abort the release."""
    deployed = [] if deployed is None else deployed
    versions = {r.service: r.version for r in rollouts}
    for rollout in rollouts:
        if rollout.service in canaries and rollout.image is not None and not rollout.kept:
            deployed.append(
                canary_service(
                    env,
                    rollout.service,
                    rollout.image,
                    rollout.version,
                    rollout.before,
                    versions,
                    report,
                )
            )
            continue
        with report.step(f"{verb} {rollout.service}") as row:
            if rollout.kept:
                row.result = f"kept {rollout.version}: it serves an image of this source already"
                continue
            if rollout.image is None:
                row.result = "nothing ran before this release; left as it is"
                continue
            result = deploy_service(
                env, rollout.service, rollout.image, rollout.version, keep_previous, rollout.before
            )
            deployed.append(result)
            row.result = result.detail
            if result.changed:
                row.changed = f"{version_of(result.previous)} -> {rollout.version}"
    if deployed:
        with report.step("edge") as row:
            edge = update_edge(env, deployed)
            row.result = f"{edge.load_balancer}; CDN: {edge.cdn}"
    return deployed


def approve(
    form: type[Approval], description: str, report: Report, timeout: int, step: str
) -> str | None:
    """Pause until a person answers `form` in the Prefect UI; why it was rejected, or None."""
    with report.step(step) as row:
        get_run_logger().info(f"waiting for {step} in the Prefect UI:\n{description}")
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=description), timeout=timeout
        )
        why = f": {answer.comment}" if answer.comment else ""
        row.result = ("approved" if answer.approved else "rejected") + why
    return None if answer.approved else f"rejected in the {step} step{why}; nothing changed"


def log_failure(report: Report, exc: BaseException) -> str:
    """Log why the run failed, first (so that nothing later can lose it); returns the message
    the record, the events and the report carry."""
    message = str(exc)[:1000] or type(exc).__name__
    get_run_logger().error(f"{report.title} failed: {message}")
    return message


def publish_failure(report: Report, message: str) -> None:
    report.publish(f"failed: {message.splitlines()[0]}")
