"""RDS: a snapshot before the migrations, and the last-resort restore from it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from domain.errors import ReleaseError
from domain.results import Backup
from targets.aws.clients import PROVISION_HINT, error_code, poll
from targets.aws.decisions import rds_identifier, restore_settings, snapshot_identifier


class Rds:
    def __init__(
        self,
        client: Any,
        instance: str,
        timeout: float,
        interval: float,
        log: Callable[[str], None],
    ):
        self.client, self.instance = client, instance
        self.timeout, self.interval, self.log = timeout, interval, log

    def describe(self, identifier: str) -> dict[str, Any] | None:
        try:
            found = self.client.describe_db_instances(DBInstanceIdentifier=identifier)
        except ClientError as exc:
            if error_code(exc) == "DBInstanceNotFound":
                return None
            raise
        return found["DBInstances"][0]

    def verify_available(self) -> str:
        """verify's probe: the instance is available, or what to do."""
        found = self.describe(self.instance)
        status = found["DBInstanceStatus"] if found else "missing"
        if found is None or status != "available":
            raise ReleaseError(
                f"RDS instance {self.instance} is {status}"
                + (f": {PROVISION_HINT}" if found is None else "; wait until it is available")
            )
        return f"RDS {found['Engine']} {self.instance} available"

    def backup(self, backup_id: str) -> Backup:
        """A manual snapshot named after the release; a re-run reuses it."""
        snapshot_id = snapshot_identifier(self.instance, backup_id)
        try:
            self.client.create_db_snapshot(
                DBInstanceIdentifier=self.instance,
                DBSnapshotIdentifier=snapshot_id,
                Tags=[{"Key": "flowmasters:backup-id", "Value": backup_id}],
            )
            self.log(f"snapshot {snapshot_id} of {self.instance} started")
        except ClientError as exc:
            if error_code(exc) != "DBSnapshotAlreadyExists":
                raise
            self.log(f"snapshot {snapshot_id} exists already (a re-run): reusing it")
        try:
            self.client.get_waiter("db_snapshot_available").wait(
                DBSnapshotIdentifier=snapshot_id, WaiterConfig=self._waiter_config()
            )
        except WaiterError as exc:
            raise ReleaseError(
                f"snapshot {snapshot_id} of {self.instance} is not available after "
                f"{self.timeout:g}s ({exc}); nothing was migrated"
            ) from exc
        snapshot = self.client.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)[
            "DBSnapshots"
        ][0]
        size = int(snapshot.get("AllocatedStorage", 0))
        return Backup(
            backup_id=backup_id,
            location=snapshot.get("DBSnapshotArn") or snapshot_id,
            size_bytes=size * 2**30,
            detail=f"RDS snapshot {snapshot_id} of {self.instance} ({size} GiB allocated storage), "
            "restorable with restore_db_instance_from_db_snapshot",
        )

    def restore(self, backup: Backup) -> None:
        """Restore to a new instance, then swap names: the old instance stays, renamed.

        A restored instance does not inherit the replaced instance's settings, so they are carried
        over (`restore_settings`): what the restore call accepts (deletion protection, tags,
        parameter group, IAM auth, ...) is passed to it, the rest (backup retention and window,
        maintenance window, storage autoscaling, Performance Insights, enhanced monitoring) is set
        with one modify_db_instance on the restored instance before the swap.

        The old instance keeps its settings, DeletionProtection included: that is intended, it is
        the safety copy, and deleting it later is a deliberate step (turn protection off first).
        """
        snapshot_id = backup.location.rsplit(":", 1)[-1]
        old = self.describe(self.instance)
        if old is None:
            raise ReleaseError(f"RDS instance {self.instance} not found: nothing to restore over")
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        restored = rds_identifier(f"{self.instance}-restore-{stamp}", 63)
        kept = rds_identifier(f"{self.instance}-old-{stamp}", 63)
        options: dict[str, Any] = {
            "DBInstanceClass": old.get("DBInstanceClass"),
            "DBSubnetGroupName": (old.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
            "VpcSecurityGroupIds": [
                g["VpcSecurityGroupId"] for g in old.get("VpcSecurityGroups", [])
            ],
            "MultiAZ": old.get("MultiAZ"),
            "PubliclyAccessible": old.get("PubliclyAccessible"),
        }
        carried, later = restore_settings(old, self._tags(old))
        self.client.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=restored,
            DBSnapshotIdentifier=snapshot_id,
            **{k: v for k, v in options.items() if v not in (None, [])},
            **carried,
        )
        self.log(f"restoring {snapshot_id} into {restored}")
        self.log(self._carried_over(carried, later))
        self._available(restored)
        if later:
            self.client.modify_db_instance(
                DBInstanceIdentifier=restored, ApplyImmediately=True, **later
            )
            self._available(restored)
        self._rename(self.instance, kept)
        self._rename(restored, self.instance)
        self.log(
            f"{self.instance} now holds {snapshot_id}; the replaced instance is kept as {kept}"
        )

    def _tags(self, instance: dict[str, Any]) -> list[dict[str, Any]]:
        arn = instance.get("DBInstanceArn")
        if not arn:
            return []
        return self.client.list_tags_for_resource(ResourceName=arn).get("TagList", [])

    def _carried_over(self, carried: dict[str, Any], later: dict[str, Any]) -> str:
        """One line: the settings carried over from the replaced instance (tag keys, no values)."""
        names = [k for k in carried if k != "Tags"] + list(later)
        tags = [t["Key"] for t in carried.get("Tags", [])]
        if tags:
            names.append(f"Tags ({', '.join(tags)})")
        return f"carried over from {self.instance}: {', '.join(names) or 'nothing'}"

    def _rename(self, identifier: str, new: str) -> None:
        self.client.modify_db_instance(
            DBInstanceIdentifier=identifier, NewDBInstanceIdentifier=new, ApplyImmediately=True
        )
        self._available(new)

    def _available(self, identifier: str) -> None:
        """Own polling: the waiter gives up on DBInstanceNotFound, which a rename passes through."""

        def probe() -> tuple[bool, None, str]:
            found = self.describe(identifier)
            status = found.get("DBInstanceStatus") if found else "not found yet"
            return status == "available", None, f"{identifier} {status}"

        poll(f"RDS instance {identifier}", probe, self.timeout, self.interval, self.log)

    def _waiter_config(self) -> dict[str, Any]:
        delay = max(self.interval, 0.01)
        return {"Delay": delay, "MaxAttempts": max(1, math.ceil(self.timeout / delay))}
