"""A release whose process dies mid-release is rolled back by the `prefect.flow-run.Crashed`
trigger of rollback/sandbox. A crashed process can emit nothing itself: the worker reports the
crash, and the rollback decides from the release record."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from tests.e2e.conftest import (
    SANDBOX,
    SANDBOX_FRONTEND,
    code,
    new_version,
    read,
    rolled_back_to,
    runs_logging,
    served_version,
    start,
    wait_final,
    wait_until,
)

pytestmark = [pytest.mark.e2e, SANDBOX]


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc: the flow run's process and what it started."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    return [pid, *(p for kid in kids for p in process_tree(kid))]


def test_a_release_killed_in_its_bake_window_is_rolled_back_by_itself():
    good = new_version("e2e-before-crash")
    assert wait_final(
        start("release/sandbox", version=good, source=code(good)).id
    ).state.is_completed()
    since = datetime.now(UTC)

    doomed = new_version("e2e-crash")
    run = start("release/sandbox", version=doomed, source=code(doomed), bake_seconds=600)
    wait_until(
        "the new version serving (the release is in its bake window)",
        lambda: served_version(SANDBOX_FRONTEND) == doomed,
        timeout=300,
    )
    pid = wait_until("the run's process id", lambda: read(run.id).infrastructure_pid)
    # The worker started this process for this test's flow run: ending it (and what it started)
    # is ending our own processes, as a power cut or an OOM kill would.
    for victim in reversed(process_tree(int(str(pid).rpartition(":")[2]))):
        os.kill(victim, signal.SIGKILL)

    crashed = wait_final(run.id, timeout=120).state
    assert crashed.type == StateType.CRASHED, crashed
    rollbacks = rolled_back_to(good, since)
    assert all(r.state.is_completed() for r in rollbacks), [r.state for r in rollbacks]
    assert any("crashed" in str(r.parameters.get("reason")) for r in rollbacks)
    # The killed process could not release the environment's lock; the rollback freed its lease
    # at once instead of waiting up to a minute for it to expire, users on mixed versions.
    freed = runs_logging([r.id for r in rollbacks], "freed the environment lock")
    assert freed, "the rollback waited for the crashed release's lease to expire"
