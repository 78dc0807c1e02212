"""The Prefect server itself restarted in the middle of a release that the worker started (as the
UI, CI and the main command start one): `scripts/stack.sh restart prefect` stops the suite's own
server by its PID and starts it again on the same database, as a person upgrading it would.

This is the real thing, not the fault proxy of test_prefect_api.py: the worker, the warm launcher,
the release's own process and the server's automations all lose the server at once and must find
it again. It restarts the server the whole suite uses, so it runs alone (`alone`: no other test
runs meanwhile, tests/support/schedule.py); the test waits for the server to answer before it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
from prefect.variables import Variable

from domain.records import ReleaseRecord
from flows.release import release
from tasks.records import variable_name
from testbed.scratch import (
    Scratch,
    app_query,
    create_environment,
    deploy_like,
    lock_slots,
    new_code,
    remove_environment,
    served_versions,
)
from tests.support.matrix import MATRIX, Row

pytestmark = [pytest.mark.integration, pytest.mark.alone]

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 600
# The bake keeps the release going while the server restarts (about 10 s here), so the release's
# last steps (the switch's commit, the record, its final state) meet a server that was away.
BAKE_SECONDS = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    def short_checks(_name: str, description: dict[str, Any]) -> None:
        description["checks"]["window_seconds"] = 2

    scratch = create_environment(
        "it-restart", tmp_path_factory.mktemp("restart"), edit=short_checks
    )
    deploy_like(scratch.name)
    first = release(scratch.name, "v0", str(new_code(scratch.source, "v0")), return_state=True)
    assert first.is_completed(), first.message
    yield scratch
    remove_environment(scratch.name, scratch.database)


def main_command(env: Scratch, version: str) -> subprocess.Popen[str]:
    """`python -m flows.cli`: the release is a deployment run the worker starts."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--environment", env.name, "--version", version,
         "--source", str(new_code(env.source, version)), "--bake-seconds", str(BAKE_SECONDS)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def task_run_state(name: str) -> str | None:
    with get_client(sync_client=True) as client:
        found = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name]))
        )
    return (found[0].state.name if found[0].state else "?") if found else None


def wait_for_task(name: str, running: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline and running.poll() is None:
        state = task_run_state(name)
        if state is not None:
            return state
        time.sleep(0.2)
    raise AssertionError(f"the release never reached {name}: {running.communicate()[0][-3000:]}")


def restart_server() -> float:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/stack.sh", "restart", "prefect"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    httpx.get(os.environ["PREFECT_API_URL"] + "/health", timeout=10).raise_for_status()
    return time.monotonic() - started


def test_a_restart_of_the_prefect_server_in_the_middle_of_a_release(env):
    """From the moment the server shows this run's backend deploy, the server is stopped and
    started again. The release must end fully on one version (here: the new one, since nothing
    failed), with no row lost, its record written, the lock free, and the next release must
    start through the worker as before."""
    title = f"written before the server restarted {time.time_ns()}"
    app_query(f"INSERT INTO pages (title, body) VALUES ('{title}', 'x')", env.database)
    version = f"restart-{time.time_ns()}"
    started = time.monotonic()
    command = main_command(env, version)
    at_restart = wait_for_task(f"deploy-backend-{version}", command)
    restart_took = restart_server()
    try:
        said, _ = command.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        command.kill()
    took = time.monotonic() - started

    now = served_versions(env)
    record = ReleaseRecord.model_validate(Variable.get(variable_name(env.name)))
    lost = 1 - int(app_query(f"SELECT count(*) FROM pages WHERE title = '{title}'", env.database))
    slots = lock_slots(env.name)
    MATRIX.append(
        Row(
            fault=f"Prefect server restarted ({restart_took:.1f} s: stopped by PID, started)",
            step="deploy backend onward (a worker's run)",
            end_state=f"services {'new' if now['frontend'] == now['backend'] == version else now}; "
            f"record {record.status if record.version == version else 'not written'}",
            rows_lost=lost,
            recovered_s=took,
            note=f"lock {'free' if slots == 0 else 'HELD'}; restart began with the deploy "
            f"{at_restart}; command exit {command.returncode}",
        )
    )
    assert command.returncode == 0, said[-4000:]
    assert "release Completed" in said, said[-4000:]
    assert (now["frontend"], now["backend"]) == (version, version), now
    assert record.version == version and record.status == "succeeded", record
    assert lost == 0
    assert slots == 0, "the environment's lock is still held after the release ended"


def test_the_next_release_after_the_restart_goes_through_the_worker(env):
    """The worker, the launcher and the deployment's own one-at-a-time limit all work after the
    restart: a release started now does not wait for a slot the restart left taken."""
    version = f"after-restart-{time.time_ns()}"
    command = main_command(env, version)
    try:
        said, _ = command.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        command.kill()
    assert command.returncode == 0, said[-4000:]
    assert "AwaitingConcurrencySlot" not in said, said[-4000:]
    assert served_versions(env)["frontend"] == version
    assert lock_slots(env.name) == 0
