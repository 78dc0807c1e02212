"""The deployments people use: one release at a time, approval for production, dry runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.flow_runs import resume_flow_run

from flows.lock import lock_name
from flows.release import release
from tests.e2e.conftest import (
    LOCAL_FRONTEND,
    PRODUCTION_FRONTEND,
    new_version,
    read,
    served_version,
    start,
    wait_final,
    wait_until,
)


def test_two_releases_started_at_once_only_one_runs():
    version = new_version("e2e-twice")

    first, second = start("release/local", version=version), start("release/local", version=version)
    states = sorted(wait_final(run.id).state.type.value for run in (first, second))

    assert states == ["CANCELLED", "COMPLETED"]
    assert served_version(LOCAL_FRONTEND) == version


def test_release_while_the_environment_is_locked_is_refused_with_a_message():
    before = served_version(LOCAL_FRONTEND)
    with concurrency(lock_name("local"), occupy=1, strict=True):
        state = release("local", new_version("e2e-locked"), return_state=True)

    assert state.is_failed()
    assert "another release or rollback of 'local' is running" in state.message
    assert "nothing was changed" in state.message
    assert served_version(LOCAL_FRONTEND) == before


def paused_run(version: str):
    run = start("release/production", version=version, bake_seconds=0)
    wait_until(
        "the production release pausing for approval",
        lambda: (state := read(run.id).state) and (state.is_paused() or state.is_final()),
        timeout=300,
    )
    assert read(run.id).state.is_paused(), read(run.id).state
    return run


@pytest.fixture(scope="module")
def production_baseline() -> str:
    """Production serves a version of this module before the approval tests start."""
    version = new_version("e2e-prod")
    run = paused_run(version)
    resume_flow_run(run.id, run_input={"approve": True, "comment": "baseline"})
    assert wait_final(run.id).state.is_completed()
    return version


def test_production_release_waits_for_approval_then_goes_on(production_baseline):
    version = new_version("e2e-approved")

    run = paused_run(version)
    assert served_version(PRODUCTION_FRONTEND) == production_baseline, (
        "nothing changed while paused"
    )
    resume_flow_run(run.id, run_input={"approve": True, "comment": "looks right"})

    assert wait_final(run.id).state.is_completed()
    assert served_version(PRODUCTION_FRONTEND) == version


def test_rejected_production_release_changes_nothing(production_baseline):
    before = served_version(PRODUCTION_FRONTEND)
    version = new_version("e2e-rejected")

    run = paused_run(version)
    resume_flow_run(run.id, run_input={"approve": False, "comment": "not today"})

    final = wait_final(run.id).state
    assert final.is_cancelled(), final
    assert "rejected" in final.message and "not today" in final.message
    assert served_version(PRODUCTION_FRONTEND) == before


def test_cli_run_with_an_all_digits_version_as_the_ci_example_does():
    version = "2026112601"
    prefect = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "prefect"

    done = subprocess.run(
        [
            str(prefect),
            "deployment",
            "run",
            "release/local",
            "--params",
            f'{{"version": "{version}"}}',
            "--watch",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert served_version(LOCAL_FRONTEND) == version


def test_staging_releases_nightly_from_the_main_branch():
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("release/staging")
        schedules = client.read_deployment_schedules(deployment.id)

    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in schedules] == [
        ("0 2 * * *", "UTC", True)
    ]
    assert deployment.parameters["git_ref"] == "main"
    assert deployment.parameters["git_repository"]
