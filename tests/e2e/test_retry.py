"""Retrying a failed release run (the UI's Retry, `prefect flow-run retry`) resumes it: the steps
that finished are cache hits."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment

from testbed.scratch import Scratch, create_environment, new_code, remove_environment
from tests.e2e.conftest import read, served_version, wait_final, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[Scratch, str]]:
    """A scratch environment with a release deployment of its own (no rollback automation)."""
    env = create_environment("e2e", tmp_path)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("release")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=env.name,
            entrypoint="flows/release.py:release",
            work_pool_name=os.environ.get("FM_WORK_POOL", "flowmasters"),
            parameters={"environment": env.name, "source": str(env.source)},
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ],
        )
    try:
        yield env, f"release/{env.name}"
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
        remove_environment(env.name, env.database)


def task_states_since(flow_run_id, since: datetime) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: r.state.name for r in runs if r.state and r.created and r.created >= since}


def test_retrying_a_failed_release_reuses_the_finished_steps(scratch):
    env, deployment = scratch
    frontend = next(s for s in env.description["services"] if s["name"] == "frontend")
    new_code(env.source, "v1")
    assert wait_final(
        run_deployment(deployment, parameters={"version": "v1"}, timeout=0).id
    ).state.is_completed()
    since_v2 = datetime.now(UTC)
    # v2's frontend will start on slot 1. Once the release has passed verify (which refuses a
    # slot port another process holds) and taken its backup, something else takes that port, so
    # the frontend cannot start: the release fails after build, push and backup.
    port = env.description["target"]["port_base"] + 3
    new_code(env.source, "v2")
    blocker = socket.socket()
    try:
        run = run_deployment(deployment, parameters={"version": "v2"}, timeout=0)
        wait_until(
            "the release's backup",
            lambda: any(n.startswith("backup-") for n in task_states_since(run.id, since_v2)),
            timeout=300,
            every=0.05,
        )
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        failed = wait_final(run.id)
    finally:
        blocker.close()
    assert failed.state.is_failed()
    assert "frontend" in failed.state.message and "before it became healthy" in failed.state.message
    assert served_version(frontend["public_url"]) == "v1", "v1 kept serving"

    retried_at = datetime.now(UTC)
    subprocess.run(
        [str(REPO / ".venv/bin/prefect"), "flow-run", "retry", str(run.id)],
        check=True,
        capture_output=True,
    )
    final = wait_until(
        "the retried run ending",
        lambda: (r := read(run.id)).state.is_final() and r.state.timestamp > retried_at and r,
        timeout=600,
    )

    assert final.state.is_completed(), final.state
    states = task_states_since(run.id, retried_at)
    assert {n: s for n, s in states.items() if n.startswith(("build-", "push-", "backup-"))} == {
        "build-backend": "Cached",
        "build-frontend": "Cached",
        "push-backend": "Cached",
        "push-frontend": "Cached",
        next(n for n in states if n.startswith("backup-")): "Cached",
    }
    assert served_version(frontend["public_url"]) == "v2"
