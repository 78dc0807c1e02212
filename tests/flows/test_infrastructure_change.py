"""Provisioning in the release flow: propose, (approve,) apply; over the FAKE target of conftest.py.

The fake's `proposal` plays the change set a target would propose (on AWS, CloudFormation).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.flow_runs import resume_flow_run

from domain.results import InfrastructureChange
from flows import events
from flows.release import release
from tests.flows.conftest import code
from tests.flows.test_release import names

CHANGE = InfrastructureChange(
    target="fake",
    kind="UPDATE",
    change_id="flowmasters-cs-1",
    summary="stack fm UPDATE with change set flowmasters-cs-1:\nModify AWS::Logs::LogGroup Logs",
    changes=1,
)


def test_a_proposed_change_is_published_then_applied_before_any_image_is_built(
    fake, emitted, source
):
    fake.proposal = CHANGE

    result = release("flowtest", "infra-v1", code(source, "infra-v1"))

    assert result["status"] == "succeeded"
    assert fake.calls[:4] == [
        "verify",
        "plan_infrastructure",
        "provision:flowmasters-cs-1",
        "verify",  # again, on what provisioning made
    ]
    assert fake.calls[4].startswith("build")
    assert names(emitted)[0] == events.RELEASE_STARTED
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["infrastructure-flowtest"]))
        )
    assert found and "Modify AWS::Logs::LogGroup Logs" in found[-1].data


def test_a_dry_run_discards_the_proposal_and_changes_nothing(fake, emitted, source):
    fake.proposal = CHANGE

    result = release("flowtest", "infra-v2", code(source, "infra-v2"), dry_run=True)

    assert result["status"] == "dry-run"
    assert result["infrastructure"] == CHANGE.summary
    assert result["plan"]["services"]
    assert "discard:flowmasters-cs-1" in fake.calls
    assert not [c for c in fake.calls if c.startswith(("provision", "build", "deploy"))]
    assert events.RELEASE_STARTED not in names(emitted)


def test_a_dry_run_of_a_new_stack_stops_after_the_proposal(fake, emitted, source):
    fake.proposal = CHANGE.model_copy(update={"kind": "CREATE"})

    result = release("flowtest", "infra-v2", code(source, "infra-v2"), dry_run=True)

    assert result == {"status": "dry-run", "version": "infra-v2", "infrastructure": CHANGE.summary}
    assert fake.calls == ["verify", "plan_infrastructure", "discard:flowmasters-cs-1"]


def run_and_answer(source: str, answers: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    """Start a release with require_approval in a thread; answer each pause with the next form.
    Returns the final state and the step each pause was in (from the pause's form)."""
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "state",
            release(
                "flowtest",
                f"infra-{uuid.uuid4().hex[:6]}",
                source,
                require_approval=True,
                return_state=True,
            ),
        )
    )
    thread.start()
    forms: list[str] = []
    for answer in answers:
        paused = wait_for_pause(exclude=set(forms))
        forms.append(paused)
        resume_flow_run(paused.split("|")[0], run_input=answer)
    thread.join(timeout=120)
    assert not thread.is_alive()
    return result["state"], [f.split("|")[1] for f in forms]


def wait_for_pause(exclude: set[str]) -> str:
    """'<flow run id>|<pause key>' of a paused release run not seen before."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["release"]))
            )
            for run in runs:
                if run.state and run.state.is_paused():
                    key = f"{run.id}|{run.state.state_details.pause_key}"
                    if key not in exclude:
                        fresh = client.read_flow_runs(
                            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
                        )[0]
                        if fresh.state.is_paused():
                            return key
        time.sleep(0.3)
    raise AssertionError("the release did not pause for approval within 60 s")


def test_a_rejected_infrastructure_change_is_discarded_and_nothing_changes(fake, emitted, source):
    fake.proposal = CHANGE

    state, pauses = run_and_answer(source, [{"approve": False, "comment": "not this week"}])

    assert state.is_cancelled()
    assert "rejected in the infrastructure approval step: not this week" in state.message
    assert len(pauses) == 1
    assert fake.calls == ["verify", "plan_infrastructure", "discard:flowmasters-cs-1"]
    assert events.RELEASE_STARTED not in names(emitted)


def test_an_approved_change_is_applied_then_the_release_plan_is_approved_too(fake, emitted, source):
    fake.proposal = CHANGE

    state, pauses = run_and_answer(source, [{"approve": True}, {"approve": True}])

    assert state.is_completed(), state.message
    assert len(set(pauses)) == 2  # two separate approvals: the change set, then the plan
    assert fake.calls.index("provision:flowmasters-cs-1") < fake.calls.index("build:backend")
    assert any(c.startswith("deploy:frontend") for c in fake.calls)
