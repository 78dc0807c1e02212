"""The release flow: the deployment strategy's eight steps, in order, on any target.

    1 infrastructure  2 build  3 push  4 record, backup, migrate  5-6 deploy backend then frontend
    7 edge  8 smoke checks

The flow never learns which target it runs on: each task asks the environment's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Cancelled
from pydantic import Field

import targets
from flows import events
from flows.lock import environment_lock
from flows.report import StepLog, publish
from targets.base import (
    BuildSpec,
    DeployResult,
    EnvironmentSpec,
    InfrastructureChange,
    PushedImage,
)
from targets.errors import ChecksFailed
from tasks.checks import smoke_check
from tasks.database import backup_database, read_schema, run_migrations
from tasks.edge import update_edge
from tasks.images import build_image, fingerprint_source, push_image
from tasks.infrastructure import (
    discard_infrastructure_change,
    plan_infrastructure,
    provision_infrastructure,
    verify_infrastructure,
)
from tasks.plan import ReleasePlan, plan_release, render_plan
from tasks.records import (
    ReleaseRecord,
    image_refs,
    read_release_record,
    start_record,
    write_release_record,
)
from tasks.services import deploy_service, read_live_revisions
from tasks.source import Source, choose_version, combined_digest, normalize_version, resolve_source


class ReleaseApproval(RunInput):
    """The form a person fills in (Prefect UI: the paused run's Resume button)."""

    approve: bool = Field(
        default=False, description="Tick to go ahead with this plan; leave it to reject."
    )
    comment: str = Field(default="", description="Why; kept in the release report.")


class InfrastructureApproval(ReleaseApproval):
    """The form for a proposed infrastructure change (on AWS: a CloudFormation change set).

    A separate, earlier approval than the release plan's: the plan reads what the
    infrastructure runs, so it can only be made once the infrastructure is what it will be.
    """


@flow(name="release", timeout_seconds=3600)
def release(
    environment: str = "local",
    version: str | int | None = None,
    source: str = "examples/flowmasters",
    build_args: dict[str, str] | None = None,
    git_repository: str | None = None,
    git_ref: str = "main",
    dry_run: bool = False,
    require_approval: bool = False,
    approval_timeout_seconds: int = 3600,
    bake_seconds: float = 0,
) -> Any:
    """Release `source` as `version` to `environment`.

    Args:
        environment: name of a Flowmasters Environment block (local, staging, production, ...).
        version: image tag for this release; default: the source's git SHA (12 characters).
            Digits-only versions are fine (given as a number, they become a string).
        source: folder with one build context per service: in this repository, or in the
            checkout of `git_repository` when that is given.
        build_args: extra Docker build arguments, e.g. {"BREAK_AFTER_SECONDS": "5"} for a demo of
            a broken release.
        git_repository: take the source from this git repository (URL or path) at `git_ref`.
        git_ref: branch, tag or commit of `git_repository`.
        dry_run: publish the plan (infrastructure change, images to build, current and next
            revision per service, migrations pending) and change nothing.
        require_approval: pause before anything changes until a person approves: first a
            proposed infrastructure change (if there is one), then the release plan.
        approval_timeout_seconds: how long to wait for that approval before failing.
        bake_seconds: after the smoke checks pass, keep checking this long; a failure in that
            window fails the release (and so triggers the automatic rollback).
    """
    normalize_version(version)  # a malformed version fails here, before anything runs
    spec = targets.load_spec(environment)
    steps = StepLog()
    run = _Run(environment=environment, version=str(version) if version else "(from source)")
    try:
        change = _propose_infrastructure(spec, steps)
        if dry_run and change.kind == "CREATE":  # nothing to plan against before the stack exists
            discard_infrastructure_change(environment, change)
            _publish(run, steps, "dry run: the infrastructure would be created; nothing changed")
            return {"status": "dry-run", "version": run.version, "infrastructure": change.summary}
        if not change.empty and not dry_run:
            if require_approval:
                rejection = _wait_for_approval(
                    InfrastructureApproval, change.summary, steps, approval_timeout_seconds,
                    "infrastructure approval",
                )  # fmt: skip
                if rejection:
                    discard_infrastructure_change(environment, change)
                    _publish(run, steps, rejection)
                    return Cancelled(message=rejection)
            _started(run)
            with environment_lock(environment, wait_seconds=10, what="release"):
                _provision(spec, steps, change)
        builds, plan = _plan(spec, steps, run, version, source, build_args, git_repository, git_ref)
        if dry_run:
            if not change.empty:
                discard_infrastructure_change(environment, change)
            _publish(run, steps, "dry run: nothing changed")
            return {
                "status": "dry-run",
                "version": run.version,
                "infrastructure": change.summary,
                "plan": plan.model_dump(mode="json"),
            }
        if require_approval:
            rejection = _wait_for_approval(
                ReleaseApproval, render_plan(plan), steps, approval_timeout_seconds, "approval"
            )
            if rejection:
                _publish(run, steps, rejection)
                return Cancelled(message=rejection)
        _started(run, source=builds[0].context_dir)
        pushed = _images(spec, steps, builds)
        with environment_lock(environment, wait_seconds=10, what="release"):
            _apply(spec, steps, run, pushed, bake_seconds)
        _publish(run, steps, "succeeded")
        return {"release_id": run.record.release_id, "version": run.version, "status": "succeeded"}
    except BaseException as exc:
        _on_failure(run, steps, exc)
        raise


@dataclass
class _Run:
    """What the failure handler and the report need to know about this run so far."""

    environment: str
    version: str
    record: ReleaseRecord | None = None
    started: bool = False


def _started(run: _Run, **payload: Any) -> None:
    """`release.started` once, just before the first change (provisioning, else the images)."""
    if not run.started:
        run.started = True
        events.emit(events.RELEASE_STARTED, run.environment, run.version, **payload)


def _propose_infrastructure(spec: EnvironmentSpec, steps: StepLog) -> InfrastructureChange:
    """Step 1, changing nothing: verify, then propose what provisioning would change."""
    with steps.step("infrastructure") as row:
        verified = verify_infrastructure(spec.name)
        change = plan_infrastructure(spec.name)
        row.result = "; ".join(f.detail for f in verified.findings)
        row.result += f"; proposed: {change.summary.splitlines()[0]}"
    return change


def _provision(spec: EnvironmentSpec, steps: StepLog, change: InfrastructureChange) -> None:
    """Step 1, applying the proposal; then verify again what the release will run on."""
    with steps.step("provision") as row:
        provisioned = provision_infrastructure(spec.name, change)
        verified = verify_infrastructure(spec.name)
        row.result = "; ".join(f.detail for f in (*provisioned.findings, *verified.findings))
        row.changed = ", ".join(provisioned.changed)


def _plan(
    spec: EnvironmentSpec,
    steps: StepLog,
    run: _Run,
    version: str | int | None,
    source: str,
    build_args: dict[str, str] | None,
    git_repository: str | None,
    git_ref: str,
) -> tuple[list[BuildSpec], ReleasePlan]:
    """The release plan: nothing changes here."""
    environment = spec.name
    with steps.step("plan") as row:
        src = resolve_source(source, git_repository, git_ref)
        builds = _build_specs(spec, src, version, build_args or {})
        run.version = builds[0].version
        plan = plan_release(environment, builds)
        create_markdown_artifact(
            key=f"release-plan-{environment}",
            markdown=render_plan(plan),
            description="Release plan",
        )
        row.result = ", ".join(f"{s.service} {s.current} -> {s.next}" for s in plan.services)
        row.result += f"; migrations pending: {list(plan.pending_migrations) or 'none'}"
    return builds, plan


def _wait_for_approval(
    form: type[ReleaseApproval], description: str, steps: StepLog, timeout: int, step: str
) -> str | None:
    """Pause until a person approves in the UI; returns why it was rejected, or None."""
    with steps.step(step) as row:
        get_run_logger().info(f"waiting for {step} in the Prefect UI:\n{description}")
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=description, approve=False),
            timeout=timeout,
        )
        row.result = ("approved" if answer.approve else "rejected") + (
            f": {answer.comment}" if answer.comment else ""
        )
    if answer.approve:
        return None
    why = f": {answer.comment}" if answer.comment else ""
    return f"rejected in the {step} step{why}; nothing changed"


def _images(spec: EnvironmentSpec, steps: StepLog, builds: list[BuildSpec]) -> list[PushedImage]:
    """Steps 2 and 3: the environment's serving state is not touched yet."""
    environment = spec.name
    with steps.step("build") as row:
        futures = [build_image.submit(environment, b) for b in builds]
        built = [f.result() for f in futures]
        row.result = ", ".join(f"{b.service} {b.image_id[:19]}" for b in built)
    with steps.step("push") as row:
        futures = [push_image.submit(environment, b) for b in built]
        pushed = [f.result() for f in futures]
        row.result = ", ".join(f"{p.reference}@{p.digest[:19]}" for p in pushed)
        row.changed = ", ".join(f"pushed {p.service}" for p in pushed if p.pushed)
    return pushed


def _apply(
    spec: EnvironmentSpec, steps: StepLog, run: _Run, pushed: list[PushedImage], bake: float
) -> None:
    """Steps 4-8, under the environment's lock: record, backup, migrate, deploy, edge, checks."""
    environment, version = spec.name, run.version
    with steps.step("release record") as row:
        run.record = _start_record(spec, version, pushed)
        row.result = f"{run.record.release_id}; before: " + _describe_previous(run.record)

    with steps.step("backup") as row:
        backup = backup_database(environment, run.record.release_id)
        # One write: the backup, and that changes start now (the migrations are next).
        run.record = write_release_record(
            run.record.model_copy(update={"backup": backup, "changed_environment": True})
        )
        row.result = f"{backup.location} ({backup.size_bytes} bytes; {backup.detail})"

    with steps.step("migrate") as row:
        migration = run_migrations(environment, _owner_image(spec, pushed))
        applied = sorted({*run.record.migrations_applied, *migration.applied})
        run.record = write_release_record(
            run.record.model_copy(
                update={"schema_after": migration.schema_version, "migrations_applied": applied}
            )
        )
        row.result = f"schema version {migration.schema_version}"
        row.changed = f"applied {list(migration.applied)}" if migration.applied else ""

    deployed: list[DeployResult] = []
    images = {p.service: p for p in pushed}
    for service in spec.ordered():
        with steps.step(f"deploy {service.name}") as row:
            result = deploy_service(
                environment, service.name, images[service.name].reference, version
            )
            deployed.append(result)
            row.result = result.detail
            row.changed = f"{_version(result.previous)} -> {version}" if result.changed else ""

    with steps.step("edge") as row:
        edge = update_edge(environment, deployed)
        row.result = f"{edge.load_balancer}; CDN: {edge.cdn}"

    with steps.step("smoke checks") as row:
        checks = smoke_check(environment, version)
        row.result = f"{checks.probes} probes x {checks.rounds} rounds passed"

    if bake > 0:
        with steps.step("bake") as row:
            checks = smoke_check(environment, version, window_seconds=bake)
            row.result = f"{checks.rounds} rounds over {bake:.0f}s passed"

    run.record = write_release_record(run.record.model_copy(update={"status": "succeeded"}))
    events.emit(events.RELEASE_SUCCEEDED, environment, version, release_id=run.record.release_id)


def _build_specs(
    spec: EnvironmentSpec, src: Source, version: str | int | None, extra_args: dict[str, str]
) -> list[BuildSpec]:
    contexts = {s.name: str(Path(src.path) / s.context) for s in spec.ordered()}
    digests = {s.name: fingerprint_source(contexts[s.name], s.dockerfile) for s in spec.ordered()}
    chosen = choose_version(version, src, combined_digest(digests))
    return [
        BuildSpec(
            service=s.name,
            context_dir=contexts[s.name],
            dockerfile=s.dockerfile,
            repository=s.repository,
            version=chosen,
            build_args={**spec.build_args, **extra_args},
            context_digest=digests[s.name],
        )
        for s in spec.ordered()
    ]


def _owner_image(spec: EnvironmentSpec, pushed: list[PushedImage]) -> str:
    owner = spec.migration_owner()
    image = next((p for p in pushed if owner and p.service == owner.name), None)
    return image.reference if image else ""


def _start_record(spec: EnvironmentSpec, version: str, pushed: list[PushedImage]) -> ReleaseRecord:
    """Written before the first change: what runs now, the images, the schema version."""
    environment = spec.name
    previous = read_live_revisions(environment, [s.name for s in spec.ordered()])
    owner_image = _owner_image(spec, pushed)
    schema = read_schema(environment, owner_image) if owner_image else None
    record = start_record(
        latest=read_release_record(environment),
        environment=environment,
        version=version,
        images=image_refs(pushed),
        previous=previous,
        schema_before=schema.schema_version if schema else None,
        now=datetime.now(UTC),
        flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
    return write_release_record(record)


def _version(revision: Any) -> str:
    return revision.version if revision is not None else "nothing"


def _describe_previous(record: ReleaseRecord) -> str:
    return ", ".join(f"{name} {_version(rev)}" for name, rev in record.previous.items())


def _on_failure(run: _Run, steps: StepLog, exc: BaseException) -> None:
    environment, version, record = run.environment, run.version, run.record
    checks_failed = isinstance(exc, ChecksFailed)
    message = str(exc)[:1000] or type(exc).__name__
    get_run_logger().error(f"release {version} to {environment} failed: {message}")
    changed = bool(record and record.changed_environment)
    if record is not None:
        status = "checks_failed" if checks_failed else "failed"
        run.record = write_release_record(
            record.model_copy(update={"status": status, "error": message})
        )
    release_id = run.record.release_id if run.record else ""
    if checks_failed:
        events.emit(
            events.CHECKS_FAILED, environment, version, release_id=release_id, reason=message
        )
    events.emit(
        events.RELEASE_FAILED,
        environment,
        version,
        labels={"changed-environment": str(changed).lower()},
        release_id=release_id,
        reason=message,
        changed_environment=changed,
    )
    _publish(run, steps, f"failed: {message.splitlines()[0]}")


def _publish(run: _Run, steps: StepLog, outcome: str) -> None:
    facts = {"environment": run.environment, "version": run.version}
    record = run.record
    if record is not None:
        facts["release id"] = record.release_id
        facts["before"] = _describe_previous(record)
        facts["images"] = ", ".join(record.images.values())
        if record.backup:
            facts["backup"] = record.backup.location
        facts["schema"] = f"{record.schema_before} -> {record.schema_after}"
    title = f"Release {run.version} to {run.environment}"
    publish("release", run.environment, title, outcome, facts, steps)


def main() -> int:
    """Command line: run one release and say where to watch it in the Prefect UI."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Release Flow Masters to an environment.")
    parser.add_argument("--environment", default="local")
    parser.add_argument("--version", default=None)
    parser.add_argument("--source", default="examples/flowmasters")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dry-run", action="store_true", help="publish the plan, change nothing")
    parser.add_argument("--bake-seconds", type=float, default=0)
    args = parser.parse_args()
    extra = dict(arg.split("=", 1) for arg in args.build_arg)
    state = release(
        args.environment,
        args.version,
        args.source,
        extra,
        dry_run=args.dry_run,
        bake_seconds=args.bake_seconds,
        return_state=True,
    )
    ui = os.environ.get("PREFECT_UI_URL") or os.environ.get("PREFECT_API_URL", "").removesuffix(
        "/api"
    )
    print(f"\nrelease {state.name}: {state.message or ''}")
    print(f"watch it in the Prefect UI: {ui}/runs/flow-run/{state.state_details.flow_run_id}")
    if state.is_completed():
        spec = targets.load_spec(args.environment)
        for service in spec.ordered():
            print(f"{service.name}: {service.public_url}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    raise SystemExit(main())
