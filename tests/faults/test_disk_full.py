"""A full disk during the backup, for real: the environment's backup folder is a small tmpfs
mounted here and filled to its last byte, so pg_dump's write fails as it would on a full disk.

The release must stop at the backup, before its migrations, with a message that says the folder
is full and what to do; the services, the schema and every row stay as they were, no partial
dump is left to fill the disk further, and the lock is free. With space again, the next release
works.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.variables import Variable

from deployments.register import register_environment
from domain.records import ReleaseRecord
from flows.release import release
from tasks.records import variable_name
from testbed.scratch import (
    Scratch,
    app_query,
    create_environment,
    lock_slots,
    remove_environment,
    served_versions,
    with_migration,
)
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with no byte free; unmounted after."""
    mount = tmp_path / "full-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk case (needs root): {done.stderr}")
    try:
        with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Scratch]:
    def short_checks(_name: str, description: dict[str, Any]) -> None:
        description["checks"]["window_seconds"] = 1

    scratch = create_environment("it-disk", tmp_path, edit=short_checks)
    try:
        first = release(scratch.name, "v0", str(with_migration(scratch, "v0")), return_state=True)
        assert first.is_completed(), first.message
        yield scratch
    finally:
        remove_environment(scratch.name, scratch.database)


def backups_in(env: Scratch, folder: str) -> None:
    env.description["target"]["backup_dir"] = folder
    register_environment(env.name, env.description)


def test_a_full_disk_during_the_backup_stops_the_release_before_its_migrations(env, full_disk):
    usual = env.description["target"]["backup_dir"]
    before = served_versions(env)
    title = f"written before the disk filled {time.time_ns()}"
    app_query(f"INSERT INTO pages (title, body) VALUES ('{title}', 'x')", env.database)
    backups_in(env, str(full_disk))
    started = time.monotonic()
    state = release(env.name, "v1", str(with_migration(env, "v1")), return_state=True)
    took = time.monotonic() - started
    now = served_versions(env)
    kept = int(app_query(f"SELECT count(*) FROM pages WHERE title = '{title}'", env.database))
    record = ReleaseRecord.model_validate(Variable.get(variable_name(env.name)))
    left = sorted(p.name for p in full_disk.rglob("*") if p.is_file())
    message = " ".join((state.message or "").split())
    MATRIX.append(
        Row(
            fault="permanent: the backup folder's disk is full (tmpfs)",
            step="backup",
            end_state=f"{'released' if state.is_completed() else 'failed'}; services "
            + ("old" if now == before else f"CHANGED {now}"),
            rows_lost=1 - kept,
            recovered_s=took,
            note=f"record {record.status}; files left {left}; {message[:160]}",
        )
    )
    assert not state.is_completed()
    assert f"the backup folder {full_disk / env.name} is full" in message, message
    assert "set the target's backup_dir to a larger disk" in message
    assert now == before, "the release changed the environment after its backup failed"
    assert kept == 1
    assert left == ["filler"], "a partial dump was left on the full disk"
    assert record.status == "failed", record
    assert lock_slots(env.name) == 0

    backups_in(env, usual)
    again = release(env.name, "v2", str(with_migration(env, "v2")), return_state=True)
    assert again.is_completed(), again.message
    assert served_versions(env)["schema"] > before["schema"]
