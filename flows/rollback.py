"""The rollback flow: the deployment strategy's §5, on any target.

By default every service goes back to what the latest release record says ran before it, frontend
first, then backend, through the same deploy primitive as a release (start beside, health-gate,
switch, drain, keep). The schema stays: migrations are expected to be backward compatible.
`migrate_down` reverts the failed release's migrations with its own image; `restore_backup`
restores the pre-release backup, but only after a person approves it in the Prefect UI, because
every write since the backup is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Completed
from pydantic import Field

import targets
from flows import events
from flows.lock import environment_lock
from flows.report import StepLog, publish
from targets.base import DeployResult, EnvironmentSpec
from targets.errors import ReleaseError
from tasks.database import restore_database, run_migrations
from tasks.edge import update_edge
from tasks.records import ReleaseRecord, read_release_record, write_release_record
from tasks.services import deploy_service, read_live_revisions, resolve_image
from tasks.source import normalize_version


class RestoreApproval(RunInput):
    """The form a person fills in before a backup replaces the database."""

    restore: bool = Field(
        default=False, description="Tick to restore the backup and lose every write since it."
    )
    comment: str = Field(default="", description="Why; kept in the rollback report.")


def rollback_targets(
    record: ReleaseRecord, to_version: str | None, services: list[str]
) -> dict[str, str | None]:
    """service -> the version to return to (None: nothing ran before, leave it as it is)."""
    if to_version:
        return dict.fromkeys(services, to_version)
    return {
        name: (record.previous[name].version if record.previous.get(name) else None)
        for name in services
    }


def why_nothing_to_do(record: ReleaseRecord | None, release_id: str | None) -> str | None:
    """Reasons a rollback has nothing to undo; None when it should go ahead."""
    if record is None:
        return "no release was recorded for this environment"
    if release_id and record.release_id != release_id:
        return (
            f"release {release_id} is no longer the latest ({record.release_id} is): "
            "not rolling back over a newer release"
        )
    if not record.changed_environment:
        return f"release {record.release_id} failed before it changed anything"
    return None


@flow(name="rollback", timeout_seconds=3600)
def rollback(
    environment: str = "local",
    to_version: str | int | None = None,
    release_id: str | None = None,
    migrate_down: bool = False,
    restore_backup: bool = False,
    reason: str = "",
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
        lock_wait_seconds: how long to wait for a running release or rollback to end.
        approval_timeout_seconds: how long to wait for the restore approval.
    """
    target_version = normalize_version(to_version)
    spec = targets.load_spec(environment)
    steps = StepLog()
    facts = {"environment": environment, "reason": reason or "-"}
    events.emit(events.ROLLBACK_STARTED, environment, target_version or "previous", reason=reason)
    try:
        with environment_lock(environment, wait_seconds=lock_wait_seconds, what="rollback"):
            record = read_release_record(environment)
            skip = None if target_version else why_nothing_to_do(record, release_id)
            if skip is None and record is not None and record.status == "rolled_back":
                skip = f"release {record.release_id} was already rolled back"
            if skip:
                get_run_logger().info(f"nothing to roll back: {skip}")
                publish(
                    "rollback",
                    environment,
                    f"Rollback of {environment}",
                    f"nothing to do: {skip}",
                    facts,
                    steps,
                )
                events.emit(events.ROLLBACK_SUCCEEDED, environment, "unchanged", changed=False)
                return Completed(message=f"nothing to roll back: {skip}")
            if record is None:
                raise ReleaseError(
                    f"no release was recorded for '{environment}'; nothing to roll back"
                )
            facts["release"] = f"{record.release_id} ({record.version}, {record.status})"
            changed = _roll_back_services(spec, record, target_version, steps)
            if migrate_down:
                _migrate_down(spec, record, steps)
            if restore_backup:
                _restore(spec, record, steps, approval_timeout_seconds)
            write_release_record(
                record.model_copy(update={"status": "rolled_back", "updated_at": datetime.now(UTC)})
            )
        outcome = (
            "succeeded"
            if changed
            else "succeeded: the environment already ran the target revisions"
        )
        publish("rollback", environment, f"Rollback of {environment}", outcome, facts, steps)
        events.emit(
            events.ROLLBACK_SUCCEEDED, environment, target_version or "previous", changed=changed
        )
        return {
            "status": "rolled back" if changed else "unchanged",
            "release_id": record.release_id,
        }
    except BaseException as exc:
        message = str(exc)[:1000] or type(exc).__name__
        publish(
            "rollback",
            environment,
            f"Rollback of {environment}",
            f"failed: {message}",
            facts,
            steps,
        )
        events.emit(
            events.ROLLBACK_FAILED, environment, target_version or "previous", reason=message
        )
        raise


def _roll_back_services(
    spec: EnvironmentSpec, record: ReleaseRecord, to_version: str | None, steps: StepLog
) -> bool:
    """Frontend first, then backend: the reverse of the release order."""
    environment = spec.name
    services = [s.name for s in reversed(spec.ordered())]
    wanted = rollback_targets(record, to_version, services)
    live = read_live_revisions(environment, services)
    results: list[DeployResult] = []
    for name in services:
        with steps.step(f"roll back {name}") as row:
            version = wanted[name]
            if version is None:
                row.result = "nothing ran before this release; left as it is"
                continue
            image = resolve_image(environment, name, version, record)
            result = deploy_service(environment, name, image, version)
            results.append(result)
            now = live[name].version if live[name] else "nothing"
            row.result = result.detail
            row.changed = f"{now} -> {version}" if result.changed else ""
    if results:
        with steps.step("edge") as row:
            edge = update_edge(environment, results)
            row.result = f"{edge.load_balancer}; CDN: {edge.cdn}"
    return any(r.changed for r in results)


def _migrate_down(spec: EnvironmentSpec, record: ReleaseRecord, steps: StepLog) -> None:
    owner = spec.migration_owner()
    with steps.step("migrate down") as row:
        if owner is None or not record.migrations_applied:
            row.result = "the release applied no migrations"
            return
        image = record.images[owner.name].split("@")[0]
        count = len(record.migrations_applied)
        result = run_migrations(spec.name, image, "down", count)
        row.result = f"schema version {result.schema_version}"
        row.changed = f"reverted {list(result.reverted)}" if result.reverted else ""


def _restore(spec: EnvironmentSpec, record: ReleaseRecord, steps: StepLog, timeout: int) -> None:
    with steps.step("restore backup") as row:
        backup = record.backup
        if backup is None:
            raise ReleaseError(f"release {record.release_id} has no backup to restore")
        taken = record.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        warning = (
            f"Restoring **{backup.backup_id}** ({backup.location}, taken at the start of release "
            f"{record.release_id}, {taken}) replaces the whole database of **{spec.name}**. "
            f"Everything written since {taken} is lost."
        )
        get_run_logger().warning(f"waiting for approval to restore: {warning}")
        answer = pause_flow_run(
            wait_for_input=RestoreApproval.with_initial_data(description=warning, restore=False),
            timeout=timeout,
        )
        if not answer.restore:
            row.result = "not approved; the database was left as it is" + (
                f" ({answer.comment})" if answer.comment else ""
            )
            return
        restore_database(spec.name, backup)
        row.result = f"restored {backup.backup_id}" + (
            f" ({answer.comment})" if answer.comment else ""
        )
        row.changed = "database restored"
