"""The release flow: the deployment strategy's eight steps, in order, on any target.

    1 infrastructure  2 build  3 push  4 record, backup, migrate  5-6 deploy backend then frontend
    7 edge  8 smoke checks

The flow never learns which target it runs on: each task asks the environment's target.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

import targets
from flows import events
from flows.report import StepLog, publish
from targets.base import BuildSpec, DeployResult, EnvironmentSpec, PushedImage
from targets.errors import ChecksFailed
from tasks.checks import smoke_check
from tasks.database import backup_database, read_schema, run_migrations
from tasks.edge import update_edge
from tasks.images import build_image, fingerprint_source, push_image
from tasks.infrastructure import provision_infrastructure, verify_infrastructure
from tasks.records import (
    ReleaseRecord,
    image_refs,
    read_release_record,
    start_record,
    write_release_record,
)
from tasks.services import deploy_service, read_live_revisions
from tasks.source import Source, choose_version, combined_digest, normalize_version, resolve_source


@flow(name="release", timeout_seconds=3600)
def release(
    environment: str = "local",
    version: str | int | None = None,
    source: str = "examples/flowmasters",
    build_args: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Release `source` as `version` to `environment`.

    Args:
        environment: name of a Flowmasters Environment block (local, staging, production, ...).
        version: image tag for this release; default: the source's git SHA (12 characters).
        source: folder with one build context per service (relative to the repository root).
        build_args: extra Docker build arguments, e.g. {"BREAK_AFTER_SECONDS": "5"} for a demo of
            a broken release.
    """
    normalize_version(version)  # a malformed version fails here, before anything runs
    spec = targets.load_spec(environment)
    steps = StepLog()
    record: ReleaseRecord | None = None
    chosen = str(version) if version is not None else "(from source)"
    try:
        with steps.step("infrastructure") as row:
            verified = verify_infrastructure(environment)
            provisioned = provision_infrastructure(environment)
            row.result = "; ".join(f.detail for f in verified.findings)
            row.changed = ", ".join(provisioned.changed)

        with steps.step("build") as row:
            src = resolve_source(source)
            builds = _build_specs(spec, src, version, build_args or {})
            chosen = builds[0].version
            events.emit(events.RELEASE_STARTED, environment, chosen, source=src.path)
            futures = [build_image.submit(environment, b) for b in builds]
            built = [f.result() for f in futures]
            row.result = ", ".join(f"{b.service} {b.image_id[:19]}" for b in built)

        with steps.step("push") as row:
            futures = [push_image.submit(environment, b) for b in built]
            pushed = [f.result() for f in futures]
            row.result = ", ".join(f"{p.reference}@{p.digest[:19]}" for p in pushed)
            row.changed = ", ".join(f"pushed {p.service}" for p in pushed if p.pushed)

        with steps.step("release record") as row:
            record = _start_record(spec, chosen, pushed)
            row.result = f"{record.release_id}; before: " + _describe_previous(record)

        with steps.step("backup") as row:
            backup = backup_database(environment, record.release_id)
            record = write_release_record(record.model_copy(update={"backup": backup}))
            row.result = f"{backup.location} ({backup.size_bytes} bytes; {backup.detail})"

        with steps.step("migrate") as row:
            record = write_release_record(record.model_copy(update={"changed_environment": True}))
            migration = run_migrations(environment, _owner_image(spec, pushed))
            record = write_release_record(
                record.model_copy(update={"schema_after": migration.schema_version})
            )
            row.result = f"schema version {migration.schema_version}"
            row.changed = f"applied {list(migration.applied)}" if migration.applied else ""

        deployed: list[DeployResult] = []
        images = {p.service: p for p in pushed}
        for service in spec.ordered():
            with steps.step(f"deploy {service.name}") as row:
                result = deploy_service(
                    environment, service.name, images[service.name].reference, chosen
                )
                deployed.append(result)
                row.result = result.detail
                row.changed = f"{_version(result.previous)} -> {chosen}" if result.changed else ""

        with steps.step("edge") as row:
            edge = update_edge(environment, deployed)
            row.result = f"{edge.load_balancer}; CDN: {edge.cdn}"

        with steps.step("smoke checks") as row:
            checks = smoke_check(environment, chosen)
            row.result = f"{checks.probes} probes x {checks.rounds} rounds passed"

        record = write_release_record(record.model_copy(update={"status": "succeeded"}))
        events.emit(events.RELEASE_SUCCEEDED, environment, chosen, release_id=record.release_id)
        _publish(environment, chosen, record, steps, "succeeded")
        return {"release_id": record.release_id, "version": chosen, "status": "succeeded"}
    except BaseException as exc:
        _on_failure(environment, chosen, record, steps, exc)
        raise


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


def _on_failure(
    environment: str,
    version: str,
    record: ReleaseRecord | None,
    steps: StepLog,
    exc: BaseException,
) -> None:
    checks_failed = isinstance(exc, ChecksFailed)
    message = str(exc)[:1000] or type(exc).__name__
    get_run_logger().error(f"release {version} to {environment} failed: {message}")
    changed = bool(record and record.changed_environment)
    if record is not None:
        status = "checks_failed" if checks_failed else "failed"
        record = write_release_record(
            record.model_copy(update={"status": status, "error": message})
        )
    release_id = record.release_id if record else None
    if checks_failed:
        events.emit(
            events.CHECKS_FAILED, environment, version, release_id=release_id, reason=message
        )
    events.emit(
        events.RELEASE_FAILED,
        environment,
        version,
        release_id=release_id,
        reason=message,
        changed_environment=changed,
    )
    _publish(environment, version, record, steps, f"failed: {message.splitlines()[0]}")


def _publish(
    environment: str, version: str, record: ReleaseRecord | None, steps: StepLog, outcome: str
) -> None:
    facts = {"environment": environment, "version": version}
    if record is not None:
        facts["release id"] = record.release_id
        facts["before"] = _describe_previous(record)
        facts["images"] = ", ".join(record.images.values())
        if record.backup:
            facts["backup"] = record.backup.location
        facts["schema"] = f"{record.schema_before} -> {record.schema_after}"
    publish("release", environment, f"Release {version} to {environment}", outcome, facts, steps)


def main() -> int:
    """Command line: run one release and say where to watch it in the Prefect UI."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Release Flow Masters to an environment.")
    parser.add_argument("--environment", default="local")
    parser.add_argument("--version", default=None)
    parser.add_argument("--source", default="examples/flowmasters")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = dict(arg.split("=", 1) for arg in args.build_arg)
    state = release(args.environment, args.version, args.source, extra, return_state=True)
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
