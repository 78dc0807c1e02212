"""Steps 5 and 6: deploy a service. Release and rollback both use this one primitive.

Inside a release, the deploys run in a Prefect transaction that also holds the checks and the
bake (flows/release.py). Each deploy stages its own undo beside it, as the task's hooks:
- rollback (the checks or anything after this deploy failed): switch the service back to what
  served before; a release keeps that running out of rotation, so this is a switch, not a start
  (the failed revision is stopped once every service is back);
- commit (checks and bake passed): stop the previous revision, kept stopped for a rollback.
Outside a transaction (the rollback flow), the task's own transaction commits as it ends: its
commit hook runs at once (and has nothing to stop: the rollback flow keeps nothing running)
and its rollback hook never does.
"""

from __future__ import annotations

from typing import NamedTuple

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction, get_transaction

from blocks.environment import Environment
from domain.records import ReleaseRecord, switched
from domain.results import DeployResult, Revision
from targets.runlog import run_logger
from tasks.retries import RETRIES, in_transaction, retried


@task(name="read-live-revisions", cache_policy=NO_CACHE, timeout_seconds=120, **RETRIES)
def read_live_revisions(env: Environment, services: list[str]) -> dict[str, Revision | None]:
    """What each service runs now: the rollback target if this release goes wrong."""
    target = env.connect()
    return {name: target.live_revision(name) for name in services}


class Deployed(NamedTuple):
    """What a deploy's hooks need: where, what it changed, and what to go back to."""

    env: Environment
    result: DeployResult
    keep_previous: bool
    before: Revision | None  # what served before the release (the switch back's target)


@task(
    name="deploy-service",
    task_run_name="deploy-{service}-{version}",
    cache_policy=NO_CACHE,
    # Run inside the release's transaction: retried within the attempt (see tasks/retries.py).
    # Each attempt gets more than the targets' own deploy budgets (AWS: 900 s), so their message,
    # naming the service and its last events, is the one a person sees.
    **in_transaction(1200),
)
def deploy_service(
    env: Environment,
    service: str,
    image: str,
    version: str,
    keep_previous: bool = False,
    before: Revision | None = None,
) -> DeployResult:
    """Start beside the old, wait healthy, switch traffic, drain; the old is kept running
    (`keep_previous`, until the transaction commits) or stopped. Idempotent.

    `before`: what served before the release, when the caller knows it. The undo is staged
    whenever the service now serves something else, not only when this attempt changed it: an
    attempt that switched and then failed is retried, and the retry finds nothing to change."""
    result = retried(
        lambda: env.connect().deploy_service(service, image, version, keep_previous),
        f"deploy {service} {version}",
    )
    before = before if before is not None else result.previous
    txn = get_transaction()
    if txn is not None and switched(before, result.current):
        txn.set("deployed", Deployed(env, result, keep_previous, before))
    return result


@deploy_service.on_rollback
def switch_back(txn: Transaction) -> None:
    """The release failed after this deploy: serve what served before, at once."""
    deployed: Deployed | None = txn.get("deployed", None)
    if deployed is None or deployed.before is None:
        return
    previous = deployed.before
    # keep_previous: the failed revision is only taken out of rotation here, so that the next
    # service's switch back waits for no container to stop; the flow stops it after every
    # service is back (flows/release.py, confirm_switch_back).
    back = retried(
        lambda: deployed.env.connect().deploy_service(
            previous.service, previous.image, previous.version, keep_previous=True
        ),
        f"switch {previous.service} back to {previous.version}",
    )
    run_logger().warning(f"{previous.service}: switched back to {previous.version} ({back.detail})")


@task(name="stop-out-of-rotation", cache_policy=NO_CACHE, timeout_seconds=300, **RETRIES)
def stop_out_of_rotation(env: Environment, service: str) -> str:
    """Stop (and keep) what runs beside the live revision of `service`; what was stopped."""
    return env.connect().retire_previous(service)


@deploy_service.on_commit
def retire_previous(txn: Transaction) -> None:
    """The release passed: stop what it kept running. Never raises: a commit hook that fails
    makes Prefect roll the transaction back, which would undo a good release; what is left
    running takes no traffic, and the next deploy of the service stops it."""
    deployed: Deployed | None = txn.get("deployed", None)
    if deployed is None or not deployed.keep_previous or deployed.before is None:
        return
    service = deployed.result.service
    try:
        detail = deployed.env.connect().retire_previous(service)
    except Exception as exc:  # any: see the docstring
        run_logger().warning(f"{service}: the previous revision was not stopped ({exc})")
        return
    run_logger().info(f"{service}: previous revision {detail}")


@task(name="resolve-image", cache_policy=NO_CACHE, timeout_seconds=120, **RETRIES)
def resolve_image(env: Environment, service: str, version: str, record: ReleaseRecord) -> str:
    """The image of `service` at `version`: from the record when it names it, else the registry."""
    previous = record.previous.get(service)
    if previous is not None and previous.version == version:
        return previous.image
    return env.connect().image_reference(service, version)
