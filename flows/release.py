"""The release flow: the deployment strategy's eight steps, in order, on any target.

    1 infrastructure  2 build  3 push  4 record, backup, migrate  5-6 deploy backend then frontend
    7 edge  8 smoke checks

The environment's block is read once; every task that needs the target gets the `Environment`
and asks it for the target's runtime, so the flow never learns which target it runs on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled, State
from prefect.transactions import transaction

from blocks.environment import Environment, load_environment
from domain.errors import ChecksFailed, ReleaseError
from domain.plan import ReleasePlan, backup_reason
from domain.records import (
    Built,
    ReleaseRecord,
    image_refs,
    kept_but_moved,
    kept_images,
    known_sources,
    not_serving_previous,
    source_name,
    start_record,
    switched,
)
from domain.results import BuildSpec, DeployResult, InfrastructureChange, PushedImage, Revision
from domain.rollout import refuse_canary
from domain.traffic import Verdict, judge_traffic
from domain.versions import Source, choose_version, combined_digest, normalize_version
from flows import events
from flows.canary import canaries_of, refuse_unsupported
from flows.forms import InfrastructureApproval, ReleaseApproval
from flows.lock import environment_lock, refuse_if_overlapping
from flows.report import Report
from flows.steps import (
    Rollout,
    approve,
    deploy_in_order,
    log_failure,
    publish_failure,
    version_of,
)
from tasks.canary import read_bake_traffic
from tasks.checks import smoke_check
from tasks.database import backup_database, read_schema, run_migrations
from tasks.images import build_image, fingerprint_source, push_image
from tasks.infrastructure import (
    discard_infrastructure_change,
    plan_infrastructure,
    provision_infrastructure,
    verify_infrastructure,
)
from tasks.plan import plan_release, render_plan
from tasks.records import read_release_record, write_release_record
from tasks.services import read_live_revisions, stop_out_of_rotation
from tasks.source import resolve_source

DEFAULT_SOURCE = "examples/flowmasters"  # the stand-ins, for an environment that names no source
LOCK_WAIT_SECONDS = 10  # a second release is refused quickly, with a message; it never queues


@flow(name="release", timeout_seconds=3600)
def release(
    environment: str = "local",
    version: str | int | None = None,
    source: str | None = None,
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
        source: folder with one build context per service (default: the environment's
            `source`, else examples/flowmasters): in this repository, or in the
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
    run = ReleaseRun(load_environment(environment), str(version) if version else "(from source)")
    source = source or run.env.spec.source or DEFAULT_SOURCE
    wanted = Wanted(version, source, build_args or {}, git_repository, git_ref)
    gate = approval_timeout_seconds if require_approval else None
    try:
        change = propose_infrastructure(run)  # 1, changing nothing
        if dry_run:
            return publish_dry_run(run, change, wanted)
        if rejection := provision(run, change, gate):  # 1
            return cancel(run, rejection)
        builds, plan = make_plan(run, wanted)
        if rejection := approve_plan(run, plan, gate):
            return cancel(run, rejection)
        pushed = build_and_push(run, builds)  # 2, 3
        with run.lock():
            record_release(run, pushed, builds)
            back_up_database(run, plan)  # 4
            migrate_database(run, pushed, plan)  # 4
            serve(run, pushed, bake_seconds)  # 5-8
            return succeed(run)
    except BaseException as exc:
        fail(run, exc)
        raise


@dataclass(frozen=True)
class Wanted:
    """What the person asked to release: the version and where the source is."""

    version: str | int | None
    source: str
    build_args: dict[str, str]
    git_repository: str | None
    git_ref: str


@dataclass
class ReleaseRun:
    """What this run knows so far: the environment, the version, its record and its report."""

    env: Environment
    version: str
    record: ReleaseRecord | None = None
    started: bool = False
    # The environment's last release was this one (its images) and passed its checks.
    proven: bool = False
    # What the plan saw: each service's live revision, and the images kept (served already,
    # built from the same source: not built, pushed or deployed again).
    live: dict[str, Revision | None] = field(default_factory=dict)
    kept: list[PushedImage] = field(default_factory=list)
    canaries: tuple[str, ...] = ()  # the services this release moves by canary (flows/canary.py)
    schema_now: Any = None  # the schema version read under the lock, before any change
    lease: str | None = None  # the environment lock's lease, while this run holds it
    report: Report = field(init=False)

    def __post_init__(self) -> None:
        self.report = Report("release", self.env.name, self.title())

    def title(self) -> str:
        return f"Release {self.version} to {self.env.name}"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The environment's lock: a second release is refused quickly, with a message. Its
        lease goes into the record (`lock_lease`), for a rollback after a crash."""
        with environment_lock(self.env.name, LOCK_WAIT_SECONDS, what="release") as lease:
            refuse_if_overlapping(self.env.name)
            self.lease = lease
            try:
                yield
            finally:
                self.lease = None

    def start(self, **payload: Any) -> None:
        """`release.started` once, just before the first change (provisioning, else images)."""
        if not self.started:
            self.started = True
            events.emit(events.RELEASE_STARTED, self.env.name, self.version, **payload)

    def save(self, **update: Any) -> ReleaseRecord:
        """Write the record with `update` applied; it is the rollback's source of truth."""
        assert self.record is not None
        self.record = write_release_record(self.record.model_copy(update=update))
        return self.record

    def versions(self) -> dict[str, str]:
        """What each service serves once the release is done: a kept one its own version."""
        kept = {k.service: k.tag for k in self.kept}
        return {s.name: kept.get(s.name, self.version) for s in self.env.spec.ordered()}

    def updated_report(self) -> Report:
        """The report with what the run knows now: the version, and the record's facts."""
        self.report.title = self.title()
        self.report.facts = {"environment": self.env.name, "version": self.version}
        if self.record is not None:
            self.report.facts |= facts_of(self.record)
        return self.report


def propose_infrastructure(run: ReleaseRun) -> InfrastructureChange:
    """Step 1, changing nothing: verify, then propose what provisioning would change."""
    with run.report.step("infrastructure") as row:
        verified = verify_infrastructure(run.env)
        change = plan_infrastructure(run.env)
        row.result = "; ".join(f.detail for f in verified.findings)
        row.result += f"; proposed: {change.summary.splitlines()[0]}"
    return change


def publish_dry_run(run: ReleaseRun, change: InfrastructureChange, wanted: Wanted) -> dict:
    """Publish what the release would do (the proposal, then the plan) and change nothing. A
    new stack stops after its proposal: there is nothing to plan against before it exists."""
    planned: dict[str, Any] = {}
    outcome = "dry run: the infrastructure would be created; nothing changed"
    if change.kind != "CREATE":
        planned["plan"] = make_plan(run, wanted)[1].model_dump(mode="json")
        outcome = "dry run: nothing changed"
    if not change.empty:
        discard_infrastructure_change(run.env, change)
    run.updated_report().publish(outcome)
    return {
        "status": "dry-run",
        "version": run.version,
        "infrastructure": change.summary,
        **planned,
    }


def provision(run: ReleaseRun, change: InfrastructureChange, gate: int | None) -> str | None:
    """Step 1, applying the proposal (after a person's approval when `gate` gives its timeout),
    then verifying again what the release will run on. Why it was rejected, or None."""
    if change.empty:
        return None
    if gate is not None:
        step = "infrastructure approval"
        if rejection := approve(InfrastructureApproval, change.summary, run.report, gate, step):
            discard_infrastructure_change(run.env, change)
            return rejection
    run.start()
    with run.lock(), run.report.step("provision") as row:
        provisioned = provision_infrastructure(run.env, change)
        verified = verify_infrastructure(run.env)
        row.result = "; ".join(f.detail for f in (*provisioned.findings, *verified.findings))
        row.changed = ", ".join(provisioned.changed)
    return None


def make_plan(run: ReleaseRun, wanted: Wanted) -> tuple[list[BuildSpec], ReleasePlan]:
    """The images to build and the release plan (published as `release-plan-<env>`); nothing
    changes here."""
    with run.report.step("plan") as row:
        src = resolve_source(wanted.source, wanted.git_repository, wanted.git_ref)
        builds = build_specs(run.env, src, wanted)
        run.version = builds[0].version
        latest = read_release_record(run.env.name)
        run.live = read_live_revisions(run.env, [s.name for s in run.env.spec.ordered()])
        run.kept = kept_images(builds, run.env.spec.owners(), run.live, latest)
        plan = plan_release(run.env, builds, run.live, run.kept)
        run.canaries = choose_canaries(run, plan)
        create_markdown_artifact(
            key=f"release-plan-{run.env.name}",
            markdown=render_plan(plan) + canary_note(run.canaries),
            description="Release plan",
        )
        row.result = ", ".join(
            f"{s.service} {s.current} -> {s.next}" + (" (kept: same source)" if s.kept else "")
            for s in plan.services
        )
        row.result += f"; migrations pending: {list(plan.pending_migrations) or 'none'}"
        if run.canaries:
            row.result += (
                f"; canary: {', '.join(run.canaries)}, after the migrations (during it both "
                "versions run on the new schema)"
            )
    return builds, plan


def canary_note(canaries: tuple[str, ...]) -> str:
    """What the plan says of the canaries it will run."""
    if not canaries:
        return ""
    return (
        f"\n**Canary**: {', '.join(canaries)}, in steps of users' traffic (docs/canary.md). The "
        "migrations run first, so during the canary both versions run on the new schema.\n"
    )


def choose_canaries(run: ReleaseRun, plan: ReleasePlan) -> tuple[str, ...]:
    """The services to move by canary, in deploy order; refused before anything changes when
    the target has none or a pending migration is not backward compatible."""
    changed = [s.service for s in plan.services if not s.kept]
    canaries = canaries_of(run.env, changed, run.live)
    refuse_unsupported(run.env, canaries)
    owner = run.env.spec.migration_owner()
    contract = owner.migration_spec() if owner else None
    breaking = contract.not_backward_compatible if contract else ()
    if why := refuse_canary(canaries, tuple(plan.pending_migrations), breaking):
        raise ReleaseError(why + "; nothing was changed")
    return tuple(canaries)


def approve_plan(run: ReleaseRun, plan: ReleasePlan, gate: int | None) -> str | None:
    """With `gate` (the approval's timeout), a person approves the plan first; why not, or None."""
    if gate is None:
        return None
    return approve(ReleaseApproval, render_plan(plan), run.report, gate, "approval")


def build_specs(env: Environment, src: Source, wanted: Wanted) -> list[BuildSpec]:
    """One build per image: each service's, and the migrator of the migration owner (a stage
    of the same Dockerfile, from the same source, under the same version)."""
    services = env.spec.ordered()
    contexts = {s.name: str(Path(src.path) / s.context) for s in services}
    digests = {s.name: fingerprint_source(contexts[s.name], s.dockerfile) for s in services}
    version = choose_version(wanted.version, src, combined_digest(digests))
    return [
        BuildSpec(
            service=name,
            context_dir=contexts[s.name],
            dockerfile=s.dockerfile,
            repository=env.spec.repository_of(name),
            version=version,
            build_args={**env.spec.build_args, **wanted.build_args},
            context_digest=digests[s.name],
            target=stage,
            version_build_arg=s.version_build_arg,
        )
        for name, s, stage in env.spec.images()
    ]


def build_and_push(run: ReleaseRun, builds: list[BuildSpec]) -> list[PushedImage]:
    """Steps 2 and 3, every changed image at once: what the environment serves is not touched
    yet. The kept images (served already, from the same source) are neither built nor pushed."""
    run.start(source=builds[0].context_dir)
    kept = {k.service for k in run.kept}
    builds = [b for b in builds if b.service not in kept]
    unchanged = f"{', '.join(sorted(kept))} kept: served already, built from this source"
    with run.report.step("build") as row:
        built = [f.result() for f in [build_image.submit(run.env, b) for b in builds]]
        row.result = ", ".join(
            [f"{b.service} {b.image_id[:19]}" for b in built] + ([unchanged] if kept else [])
        )
    with run.report.step("push") as row:
        pushed = [f.result() for f in [push_image.submit(run.env, b) for b in built]]
        row.result = ", ".join(f"{p.reference}@{p.digest[:19]}" for p in pushed) or unchanged
        row.changed = ", ".join(f"pushed {p.service}" for p in pushed if p.pushed)
    return pushed + run.kept


def record_release(run: ReleaseRun, pushed: list[PushedImage], builds: list[BuildSpec]) -> None:
    """Written before the first change: what runs now, the images, the schema version. Read
    under the lock: another release may have finished while this one built its images."""
    with run.report.step("release record") as row:
        env = run.env
        owner_image = migration_image(env, pushed)
        latest = read_release_record(env.name)
        live = read_live_revisions(env, [s.name for s in env.spec.ordered()])
        moved = kept_but_moved(run.kept, env.spec.owners(), run.live, live)
        if moved:
            raise ReleaseError(
                f"{'; '.join(moved)} since this release was planned (another release or "
                "rollback ran meanwhile): nothing was changed; release again"
            )
        run.proven = bool(
            latest and latest.status == "succeeded" and latest.images == image_refs(pushed)
        )
        run.schema_now = read_schema(env, owner_image).schema_version if owner_image else None
        run.record = write_release_record(
            start_record(
                latest=latest,
                environment=env.name,
                version=run.version,
                images=image_refs(pushed),
                previous=live,
                schema_before=run.schema_now,
                now=datetime.now(UTC),
                flow_run_id=str(flow_run.id) if flow_run.id else None,
                sources=known_sources(latest, env.spec.owners(), live, built_from(pushed, builds)),
            ).model_copy(update={"lock_lease": run.lease})
        )
        row.result = f"{run.record.release_id}; before: " + facts_of(run.record)["before"]


def back_up_database(run: ReleaseRun, plan: ReleasePlan) -> None:
    """Step 4a: one backup per release, recorded together with "the changes start now"; none
    when nothing in the release can change what the database holds (`backup_reason`)."""
    assert run.record is not None
    with run.report.step("backup") as row:
        if backup_reason(plan, run.env.spec.database_users()) is None:
            if not plan.changes_nothing and not run.record.changed_environment:
                run.save(changed_environment=True)
            row.result = (
                "not taken: no migration runs and no service that uses the database changes"
            )
            return
        backup = backup_database(run.env, run.record.release_id)
        run.save(backup=backup, changed_environment=True)
        row.result = f"{backup.location} ({backup.size_bytes} bytes; {backup.detail})"


def migrate_database(run: ReleaseRun, pushed: list[PushedImage], plan: ReleasePlan) -> None:
    """Step 4b: the new migrator's (else the new image's) migrations; the plan's pending ones
    must be recorded afterwards. What they applied is recorded (what `down` reverts)."""
    assert run.record is not None
    with run.report.step("migrate") as row:
        if plan.migrations_known and not plan.pending_migrations:
            # The plan read the table: the source has nothing the database lacks, so the
            # migrate command would do nothing, in a container that takes seconds to start.
            # (Not schema_before: a re-run of a release keeps the record it started with.)
            if run.record.schema_after != run.schema_now:
                run.save(schema_after=run.schema_now)
            row.result = f"nothing pending ({plan.migrations_note}): not run"
            return
        image = migration_image(run.env, pushed)
        migration = run_migrations(run.env, image, expected=plan.pending_migrations)
        known = list(run.record.migrations_applied)
        applied = known + [m for m in migration.applied if m not in known]
        run.save(schema_after=migration.schema_version, migrations_applied=applied)
        row.result = f"schema version {migration.schema_version}"
        row.changed = f"applied {list(migration.applied)}" if migration.applied else ""


def serve(run: ReleaseRun, pushed: list[PushedImage], bake_seconds: float) -> None:
    """Steps 5-8 as one Prefect transaction: deploy in order, each keeping what served before
    running out of rotation; the edge; the checks and the bake. A failure anywhere in it rolls
    the transaction back: each deploy's hook switches its service back (tasks/services.py), the
    last deployed first, before the failure is reported or any event is emitted. When the
    checks and bake pass it commits, and the previous revisions are stopped (kept)."""
    assert run.record is not None
    deployed: list[DeployResult] = []
    started = time.time()  # the previous versions' traffic before this moment is the baseline
    try:
        with transaction():
            deploy_in_order(
                run.env,
                rollouts(run.env, pushed, run.versions(), run.record.previous),
                run.report,
                keep_previous=True,
                deployed=deployed,
                canaries=run.canaries,
            )  # 5-7
            changed = [d.service for d in deployed if d.changed]
            check_release(run, bake_seconds, changed=bool(changed), moved=(changed, started))  # 8
    except BaseException:
        confirm_switch_back(run, deployed)
        raise


def confirm_switch_back(run: ReleaseRun, deployed: list[DeployResult]) -> None:
    """After the undo: does every service serve what it served before the release? Read from the
    target, not assumed from the hooks; recorded, so the rollback run and a person know. When
    no service had switched (the release failed before its first switch, or it changed nothing),
    that is what the report says, and nothing is stopped."""
    assert run.record is not None
    previous = run.record.previous
    try:
        with run.report.step("switch back") as row:
            names = [s.name for s in run.env.spec.ordered()]
            live = read_live_revisions(run.env, names)
            wrong = not_serving_previous(previous, live)
            had_switched = any(switched(previous.get(d.service), d.current) for d in deployed)
            if not wrong and not had_switched:
                row.result = "no service had switched: each serves what it served before"
                return
            run.save(switched_back=not wrong)
            row.result = "; ".join(wrong) or "every service serves what it served before"
            row.changed = "" if wrong else "switched back in process"
            if not wrong:  # the failed revisions, out of rotation now, are stopped (kept)
                for name in names:
                    stop_out_of_rotation(run.env, name)
    except Exception as exc:  # the release's own failure is the one to report
        get_run_logger().error(f"could not confirm the switch back: {exc}")


def rollouts(
    env: Environment,
    pushed: list[PushedImage],
    versions: dict[str, str],
    before: dict[str, Revision | None],
) -> list[Rollout]:
    """Steps 5-6: every service to its pushed image, in deploy order (backend first); what each
    served `before` the release is what its undo goes back to. A kept image is not deployed."""
    images = {p.service: p for p in pushed}
    return [
        Rollout(
            s.name,
            versions[s.name],
            images[s.name].reference,
            before.get(s.name),
            kept=images[s.name].kept,
        )
        for s in env.spec.ordered()
    ]


def check_release(
    run: ReleaseRun,
    bake_seconds: float,
    changed: bool = True,
    moved: tuple[list[str], float] = ([], 0.0),
) -> None:
    """Step 8: the smoke checks, then (with `bake_seconds`) the same checks through the bake,
    and the users' traffic of each service that `moved` (the services, and when the release
    started deploying) judged against the previous version's before that moment.

    A re-release that changed no service, of the version that already passed its checks and
    bake when it was released, is probed once (a change of live state since then is still
    caught) rather than for a window: there is no new serving state to watch.
    """
    versions = run.versions()
    if not changed and run.proven:
        with run.report.step("smoke checks") as row:
            checks = smoke_check(run.env.spec, versions, window_seconds=0)
            row.result = (
                f"{checks.probes} probes x 1 round passed (nothing changed; {run.version} passed "
                "its checks when it was released)"
            )
        return
    with run.report.step("smoke checks") as row:
        checks = smoke_check(run.env.spec, versions)
        row.result = f"{checks.probes} probes x {checks.rounds} rounds passed"
    if bake_seconds > 0:
        with run.report.step("bake") as row:
            baked = time.time()
            checks = smoke_check(run.env.spec, versions, window_seconds=bake_seconds)
            row.result = f"{checks.rounds} rounds over {bake_seconds:.0f}s passed"
            services, started = moved
            window = (baked, time.time(), started)
            row.result += "; traffic: " + judge_bake(run.env, services, versions, window)


def judge_bake(
    env: Environment,
    services: list[str],
    versions: dict[str, str],
    window: tuple[float, float, float],
) -> str:
    """Each moved service's users' traffic through the bake against its previous version's
    over as long a window before the release; a broken bound fails the bake (ChecksFailed).
    Without figures or with too few requests, the probes alone decided: the result says so."""
    start, end, before = window
    found = []
    for service in services:
        figures = read_bake_traffic(env, service, (start, end), (before - (end - start), before))
        bounds = env.spec.service(service).rollout.bounds or env.spec.checks.traffic
        verdict = (
            judge_traffic(
                versions[service], figures.canary, figures.stable, bounds, "the previous version"
            )
            if not figures.missing
            else Verdict(None, f"no figures ({figures.missing})")
        )
        if verdict.passed is False:
            raise ChecksFailed(
                f"the bake of {service} failed on its users' traffic: {verdict.reason}"
            )
        suffix = "" if verdict.passed else ": decided by the probes alone"
        found.append(f"{service}: {verdict.reason}{suffix}")
    return "; ".join(found) or "no service moved"


def succeed(run: ReleaseRun) -> dict[str, str]:
    record = run.save(status="succeeded")
    events.emit(events.RELEASE_SUCCEEDED, run.env.name, run.version, release_id=record.release_id)
    run.updated_report().publish("succeeded")
    return {"release_id": record.release_id, "version": run.version, "status": "succeeded"}


def cancel(run: ReleaseRun, rejection: str) -> State:
    run.updated_report().publish(rejection)
    return Cancelled(message=rejection)


def fail(run: ReleaseRun, exc: BaseException) -> None:
    """Record why, emit what the rollback automations listen for, and publish the report."""
    message = log_failure(run.updated_report(), exc)
    checks_failed = isinstance(exc, ChecksFailed)
    changed = bool(run.record and run.record.changed_environment)
    if run.record is not None:
        run.save(status="checks_failed" if checks_failed else "failed", error=message)
    release_id = run.record.release_id if run.record else ""
    if checks_failed:
        events.emit(
            events.CHECKS_FAILED, run.env.name, run.version, release_id=release_id, reason=message
        )
    events.emit(
        events.RELEASE_FAILED,
        run.env.name,
        run.version,
        labels={"changed-environment": str(changed).lower()},
        release_id=release_id,
        reason=message,
        changed_environment=changed,
    )
    publish_failure(run.updated_report(), message)


def built_from(pushed: list[PushedImage], builds: list[BuildSpec]) -> dict[str, Built]:
    """What the record keeps of this release's images: each one's source key and reference."""
    keys = {b.service: b.source_key for b in builds}
    return {
        source_name(p.service, p.tag): Built(key=keys[p.service], image=f"{p.reference}@{p.digest}")
        for p in pushed
    }


def migration_image(env: Environment, pushed: list[PushedImage]) -> str:
    """Where the migrations run: the owner's migrator image if it declares one, else its own."""
    owner = env.spec.migration_owner()
    if owner is None:
        return ""
    wanted = owner.migrator_image() or owner.name
    image = next((p for p in pushed if p.service == wanted), None)
    return image.reference if image else ""


def facts_of(record: ReleaseRecord) -> dict[str, str]:
    facts = {
        "release id": record.release_id,
        "before": ", ".join(f"{name} {version_of(rev)}" for name, rev in record.previous.items()),
        "images": ", ".join(record.images.values()),
        "schema": f"{record.schema_before} -> {record.schema_after}",
    }
    if record.backup:
        facts["backup"] = record.backup.location
    return facts
