"""The deployments people use: one release at a time, approvals, the CLI, the nightly schedule."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
)
from prefect.concurrency.sync import concurrency
from prefect.flow_runs import resume_flow_run

from flows.lock import lock_name
from flows.release import release
from tests.e2e.conftest import (
    SANDBOX,
    SANDBOX_FRONTEND,
    code,
    new_version,
    read,
    served_version,
    start,
    wait_final,
    wait_until,
)

pytestmark = [pytest.mark.e2e, SANDBOX]


def test_two_releases_started_at_once_only_one_runs():
    version = new_version("e2e-twice")

    first, second = (
        start("release/sandbox", version=version, source=code(version)),
        start("release/sandbox", version=version, source=code(version)),
    )
    states = sorted(wait_final(run.id).state.type.value for run in (first, second))

    assert states == ["CANCELLED", "COMPLETED"]
    assert served_version(SANDBOX_FRONTEND) == version


def test_release_while_the_environment_is_locked_is_refused_with_a_message():
    before = served_version(SANDBOX_FRONTEND)
    with concurrency(lock_name("sandbox"), occupy=1, strict=True):
        state = release("sandbox", new_version("e2e-locked"), return_state=True)

    assert state.is_failed()
    assert "another release or rollback of 'sandbox' is running" in state.message
    assert "nothing was changed" in state.message
    assert served_version(SANDBOX_FRONTEND) == before


def paused_run(deployment: str, **parameters) -> Any:
    run = start(deployment, bake_seconds=0, **parameters)
    wait_until(
        f"the {deployment} run pausing for approval",
        lambda: (state := read(run.id).state) and (state.is_paused() or state.is_final()),
        timeout=300,
    )
    assert read(run.id).state.is_paused(), read(run.id).state
    return run


@pytest.fixture(scope="module")
def sandbox_baseline() -> str:
    """`sandbox` serves a version of this module before the approval tests start."""
    version = new_version("e2e-base")
    assert wait_final(
        start("release/sandbox", version=version, source=code(version)).id
    ).state.is_completed()
    return version


def test_a_release_that_requires_approval_waits_then_goes_on(sandbox_baseline):
    version = new_version("e2e-approved")

    run = paused_run(
        "release/sandbox", version=version, source=code(version), require_approval=True
    )
    assert served_version(SANDBOX_FRONTEND) == sandbox_baseline, "nothing changed while paused"
    resume_flow_run(run.id, run_input={"approve": True, "comment": "looks right"})

    assert wait_final(run.id).state.is_completed()
    assert served_version(SANDBOX_FRONTEND) == version


def test_a_rejected_release_changes_nothing(sandbox_baseline):
    before = served_version(SANDBOX_FRONTEND)
    version = new_version("e2e-rejected")

    run = paused_run(
        "release/sandbox", version=version, source=code(version), require_approval=True
    )
    resume_flow_run(run.id, run_input={"approve": False, "comment": "not today"})

    final = wait_final(run.id).state
    assert final.is_cancelled(), final
    assert "rejected" in final.message and "not today" in final.message
    assert served_version(SANDBOX_FRONTEND) == before


def stand_in(service: str) -> Any:
    """A client of the stack's AWS stand-in (moto's server), where `production` lives here."""
    return boto3.client(
        service,
        endpoint_url=os.environ["FM_AWS_ENDPOINT_URL"],
        region_name=os.environ.get("FM_AWS_REGION", "eu-west-1"),
        aws_access_key_id="e2e",
        aws_secret_access_key="e2e",
    )


def production_stack() -> dict[str, Any]:
    """Status, change sets and resources of flowmasters-production in the stand-in."""
    cfn = stand_in("cloudformation")
    stacks = cfn.list_stacks()["StackSummaries"]
    live = [s["StackStatus"] for s in stacks if s["StackName"] == "flowmasters-production"]
    status = next((s for s in live if s != "DELETE_COMPLETE"), None)
    if status is None:
        return {"status": None, "change_sets": [], "resources": []}
    name = "flowmasters-production"
    return {
        "status": status,
        # moto lists every stack's change sets, whatever StackName says: filter
        "change_sets": [
            c for c in cfn.list_change_sets(StackName=name)["Summaries"] if c["StackName"] == name
        ],
        "resources": cfn.describe_stack_resources(StackName=name)["StackResources"],
    }


def test_production_changes_no_infrastructure_without_approval():
    """release/production (AWS, here the moto stand-in) proposes the real template's change set
    and pauses on it; a rejection deletes it and nothing is created. moto cannot create the whole
    stack, so the approved path of a CREATE is not run here (tests/integration/flows/test_release_aws.py
    runs the approved release on a small template)."""
    assert production_stack()["status"] in (None, "REVIEW_IN_PROGRESS")  # nothing created yet

    run = paused_run("release/production", version=new_version("e2e-prod"))

    paused = production_stack()
    assert paused["status"] == "REVIEW_IN_PROGRESS"  # a change set waits; no resources
    assert [c["Status"] for c in paused["change_sets"]] == ["CREATE_COMPLETE"]
    assert paused["resources"] == []
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=["infrastructure-production"])
            )
        )[0]
    assert "CREATE with change set flowmasters-" in artifact.data
    assert "Add AWS::RDS::DBInstance Database" in artifact.data
    assert "Add AWS::ECS::Service BackendService" in artifact.data

    resume_flow_run(run.id, run_input={"approve": False, "comment": "not in the freeze"})

    final = wait_final(run.id).state
    assert final.is_cancelled(), final
    assert "rejected in the infrastructure approval step: not in the freeze" in final.message
    after = production_stack()
    assert (after["change_sets"], after["resources"]) == ([], [])


def test_cli_run_with_an_all_digits_version_as_the_ci_example_does():
    version = str(time.time_ns())  # all digits, and new: a tag is never reused for other content
    prefect = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "prefect"

    done = subprocess.run(
        [
            str(prefect),
            "deployment",
            "run",
            "release/sandbox",
            "--params",
            json.dumps({"version": version, "source": code(version)}),
            "--watch",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert served_version(SANDBOX_FRONTEND) == version


def test_the_main_command_releases_through_the_deployment_and_prints_its_logs():
    """`python -m flows.cli` (what scripts/release.sh runs) starts a run of release/sandbox,
    which the worker hands to the warm launcher, and follows it until it ends."""
    version = str(time.time_ns())  # all digits: must stay a string on its way to the flow
    python = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"

    done = subprocess.run(
        [str(python), "-m", "flows.cli", "--environment", "sandbox", "--version", version,
         "--source", code(version)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip

    out = done.stdout
    assert done.returncode == 0, out[-2000:] + done.stderr[-2000:]
    assert "of release/sandbox: http://" in out.splitlines()[0]
    assert "Task run 'smoke-check-" in out and "smoke checks passed" in out
    assert "\nrelease Completed\n" in out and f"frontend: {SANDBOX_FRONTEND}" in out
    run_id = out.split("/runs/flow-run/")[1].split()[0]
    run = read(run_id)
    assert run.deployment_id is not None and run.parameters["version"] == version
    assert served_version(SANDBOX_FRONTEND) == version


def test_staging_releases_nightly_from_the_main_branch():
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("release/staging")
        schedules = client.read_deployment_schedules(deployment.id)

    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in schedules] == [
        ("0 2 * * *", "UTC", True)
    ]
    assert deployment.parameters["git_ref"] == "main"
    assert deployment.parameters["git_repository"]
