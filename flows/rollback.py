"""The rollback flow: the deployment strategy's §5, on any target.

By default every service goes back to what the latest release record says ran before it, frontend
first, then backend, through the same deploy primitive as a release (start beside, health-gate,
switch, drain, keep). The schema stays: migrations are expected to be backward compatible.
`migrate_down` reverts the failed release's migrations with its own image; `restore_backup`
restores the pre-release backup, but only after a person approves it in the Prefect UI, because
every write since the backup is lost.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from blocks.environment import Environment, load_environment
from domain.errors import ReleaseError
from domain.records import ReleaseRecord, rollback_targets, why_nothing_to_do
from domain.results import Backup
from domain.versions import normalize_version
from flows import events
from flows.forms import RestoreApproval
from flows.lock import ended_run, environment_lock, free_lock_of_ended_release
from flows.report import Report
from flows.steps import Rollout, approve, deploy_in_order, log_failure, publish_failure
from tasks.database import restore_database, run_migrations
from tasks.records import read_release_record, write_release_record
from tasks.services import resolve_image


@flow(name="rollback", timeout_seconds=3600)
def rollback(
    environment: str = "local",
    to_version: str | int | None = None,
    release_id: str | None = None,
    migrate_down: bool = False,
    restore_backup: bool = False,
    reason: str = "",
    crashed_run: str | None = None,
    lock_wait_seconds: float = 900,
    approval_timeout_seconds: int = 3600,
) -> Any:
    """Return `environment` to what ran before its latest release (or to `to_version`).

    Args:
        environment: the environment to roll back.
        to_version: go to this earlier version instead of the recorded previous one.
        release_id: the release this rollback answers (from the triggering event); if a newer
            release has happened since, nothing is done.
        migrate_down: revert the migrations the release applied, using the release's own image.
        restore_backup: restore the pre-release backup (after approval in the UI; data written
            since the backup is lost).
        reason: why (shown in the report), e.g. the failed check.
        crashed_run: the release run whose crash started this rollback (set by the automation);
            if the latest record is not that run's, it had changed nothing, and nothing is done.
        lock_wait_seconds: how long to wait for a running release or rollback to end.
        approval_timeout_seconds: how long to wait for the restore approval.
    """
    target_version = normalize_version(to_version)
    env = load_environment(environment)
    facts = {"environment": environment, "reason": reason or "-"}
    report = Report("rollback", environment, f"Rollback of {environment}", facts)
    events.emit(events.ROLLBACK_STARTED, environment, target_version or "previous", reason=reason)
    try:
        free_lock_of_ended_release(read_release_record(environment))
        with environment_lock(environment, wait_seconds=lock_wait_seconds, what="rollback"):
            record = read_release_record(environment)
            close_record_of_ended_run(record)
            if restore_backup and record is not None:
                require_backup(record, report)
            if skip := why_nothing_to_do(record, release_id, target_version, crashed_run):
                return nothing_to_do(report, skip)
            record = recorded(record, report)
            changed = roll_back_services(env, record, target_version, report)
            if migrate_down:
                revert_migrations(env, record, report)
            if restore_backup:
                restore(env, record, report, approval_timeout_seconds)
            write_release_record(record.model_copy(update={"status": "rolled_back"}))
        return succeed(report, record, target_version, changed)
    except BaseException as exc:
        failed(report, exc, target_version)
        raise


def close_record_of_ended_run(record: ReleaseRecord | None) -> None:
    """A release whose process died wrote no outcome: its record still says `started`. The
    record is then closed as failed, naming how the run ended, so the record and the next
    rollback or release say what happened."""
    if record is None or record.status != "started":
        return
    ended = ended_run(record)
    if ended is None:
        return
    name, state, _ = ended
    stage = "after" if record.changed_environment else "before"
    write_release_record(
        record.model_copy(
            update={
                "status": "failed",
                "error": f"release run {name} ended {state} {stage} it started changing the "
                "environment; it could not record its outcome",
            }
        )
    )


def nothing_to_do(report: Report, skip: str) -> State:
    get_run_logger().info(f"nothing to roll back: {skip}")
    report.publish(f"nothing to do: {skip}")
    events.emit(events.ROLLBACK_SUCCEEDED, report.environment, "unchanged", changed=False)
    return Completed(message=f"nothing to roll back: {skip}")


def recorded(record: ReleaseRecord | None, report: Report) -> ReleaseRecord:
    """The release to undo (named in the report); without one there is nothing to go back from."""
    if record is None:
        raise ReleaseError(
            f"no release was recorded for '{report.environment}'; nothing to roll back"
        )
    report.facts["release"] = f"{record.release_id} ({record.version}, {record.status})"
    return record


def roll_back_services(
    env: Environment, record: ReleaseRecord, to_version: str | None, report: Report
) -> bool:
    """Frontend first, then backend: the reverse of the release order. Every image is resolved
    before the first service changes, so a version that never existed changes nothing."""
    services = [s.name for s in reversed(env.spec.ordered())]
    wanted = rollback_targets(record, to_version, services)
    with report.step("images") as row:
        rollouts = [
            Rollout(name, version, resolve_image(env, name, version, record))
            if version
            else Rollout(name, "", None)
            for name, version in wanted.items()
        ]
        row.result = ", ".join(f"{r.service} {r.image}" for r in rollouts if r.image) or "none"
    deployed = deploy_in_order(env, rollouts, report, verb="roll back")
    return any(d.changed for d in deployed)


def revert_migrations(env: Environment, record: ReleaseRecord, report: Report) -> None:
    """`down` as many migrations as the release applied, with the release's own image."""
    owner = env.spec.migration_owner()
    with report.step("migrate down") as row:
        if owner is None or not record.migrations_applied:
            row.result = "the release applied no migrations"
            return
        released = record.images.get(owner.migrator_image() or "") or record.images[owner.name]
        image = released.split("@")[0]
        applied = tuple(record.migrations_applied)
        result = run_migrations(env, image, "down", len(applied), expected=applied)
        row.result = f"schema version {result.schema_version}"
        row.changed = f"reverted {list(result.reverted)}" if result.reverted else ""


def require_backup(record: ReleaseRecord, report: Report) -> Backup:
    """Checked before the services change: a restore that cannot happen refuses the whole
    rollback, so nothing is half done."""
    if record.backup is None:
        with report.step("restore backup"):
            raise ReleaseError(
                f"release {record.release_id} ({record.version}) has no backup to restore: it "
                "ran no migration and changed no service that uses the database, so none was "
                "taken. Nothing was changed; roll back without restore_backup"
            )
    return record.backup


def restore(env: Environment, record: ReleaseRecord, report: Report, timeout: int) -> None:
    """The pre-release backup replaces the database, once a person approves losing every write
    since it; not approved, the database stays as it is."""
    backup = require_backup(record, report)
    taken = record.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    warning = (
        f"Restoring **{backup.backup_id}** ({backup.location}, taken at the start of release "
        f"{record.release_id}, {taken}) replaces the whole database of **{env.name}**. "
        f"Everything written since {taken} is lost."
    )
    get_run_logger().warning(f"a restore waits for approval: {warning}")
    if approve(RestoreApproval, warning, report, timeout, "restore approval"):
        return
    with report.step("restore backup") as row:
        restore_database(env, backup)
        row.result = f"restored {backup.backup_id}"
        row.changed = "database restored"


def succeed(
    report: Report, record: ReleaseRecord, to_version: str | None, changed: bool
) -> dict[str, str]:
    report.publish(
        "succeeded" if changed else "succeeded: the environment already ran the target revisions"
    )
    events.emit(
        events.ROLLBACK_SUCCEEDED, report.environment, to_version or "previous", changed=changed
    )
    return {"status": "rolled back" if changed else "unchanged", "release_id": record.release_id}


def failed(report: Report, exc: BaseException, to_version: str | None) -> None:
    message = log_failure(report, exc)
    publish_failure(report, message)
    events.emit(
        events.ROLLBACK_FAILED, report.environment, to_version or "previous", reason=message
    )
