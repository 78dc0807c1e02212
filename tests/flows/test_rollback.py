"""The rollback flow's decisions and order, over the FAKE target of conftest.py."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.flow_runs import resume_flow_run

from domain.errors import ReleaseError
from flows import events
from flows.release import release
from flows.rollback import rollback
from tests.flows.conftest import code
from tests.flows.test_release import names, record_of


@pytest.fixture
def failed_release(fake, emitted, source):
    """v1 serves; v2 went live and failed its checks (the fake then answers 500), and its own
    switch back failed too, so v2 still serves: what the rollback flow is there for."""
    release("flowtest", "v1", code(source, "v1"))
    fake.served.status = 500
    for service in ("frontend", "backend"):
        fake.fail[f"deploy:{service}:v1"] = ReleaseError(f"{service} v1 did not start")
    state = release("flowtest", "v2", code(source, "v2"), return_state=True)
    assert state.is_failed()
    assert {name: rev.version for name, rev in fake.live.items()} == {
        "backend": "v2",
        "frontend": "v2",
    }
    fake.fail.clear()
    fake.served.status = 200
    fake.calls.clear()
    emitted.clear()
    return record_of("flowtest")


def test_returns_each_service_to_what_ran_before_frontend_first(fake, emitted, failed_release):
    result = rollback("flowtest", release_id=failed_release.release_id, reason="checks failed")

    assert result["status"] == "rolled back"
    assert fake.calls == ["deploy:frontend:v1", "deploy:backend:v1", "edge"]
    assert {name: rev.version for name, rev in fake.live.items()} == {
        "backend": "v1",
        "frontend": "v1",
    }
    assert record_of("flowtest").status == "rolled_back"
    assert names(emitted) == [events.ROLLBACK_STARTED, events.ROLLBACK_SUCCEEDED]


def test_after_the_release_switched_back_itself_the_rollback_finds_nothing_to_change(
    fake, emitted, source
):
    release("flowtest", "v1", code(source, "v1"))
    fake.served.status = 500
    release("flowtest", "v2", code(source, "v2"), return_state=True)
    fake.served.status = 200
    assert record_of("flowtest").switched_back
    fake.calls.clear()

    result = rollback("flowtest", release_id=record_of("flowtest").release_id)

    assert result["status"] == "unchanged"
    assert {name: rev.version for name, rev in fake.live.items()} == {
        "backend": "v1",
        "frontend": "v1",
    }


def test_a_second_rollback_for_the_same_failure_changes_nothing(fake, emitted, failed_release):
    rollback("flowtest", release_id=failed_release.release_id)
    fake.calls.clear()

    state = rollback("flowtest", release_id=failed_release.release_id, return_state=True)

    assert state.is_completed()
    assert "already rolled back" in state.message
    assert fake.calls == []


def test_does_not_roll_back_over_a_newer_release(fake, emitted, failed_release):
    state = rollback("flowtest", release_id="flowtest-v0-20200101000000", return_state=True)

    assert state.is_completed() and "no longer the latest" in state.message
    assert fake.calls == []


def test_a_release_that_changed_nothing_is_not_rolled_back(fake, emitted, source):
    release("flowtest", "v1", code(source, "v1"))
    fake.fail["migrate"] = ReleaseError("bad migration")
    release("flowtest", "v2", code(source, "v2"), return_state=True)
    record = record_of("flowtest")
    record_unchanged = record.model_copy(update={"changed_environment": False})
    from tasks.records import write_release_record

    write_release_record.fn(record_unchanged)
    fake.calls.clear()

    state = rollback("flowtest", return_state=True)

    assert state.is_completed() and "failed before it changed anything" in state.message
    assert fake.calls == []


def test_to_version_deploys_that_version(fake, emitted, failed_release):
    result = rollback("flowtest", to_version="v1")

    assert result["status"] == "rolled back"
    assert fake.live["frontend"].image == "reg/frontend:v1"


def test_migrate_down_reverts_what_the_release_applied(fake, emitted, failed_release):
    rollback("flowtest", migrate_down=True)

    assert fake.calls == [
        "deploy:frontend:v1",
        "deploy:backend:v1",
        "edge",
        "migrate:down:1",
    ]


def run_and_answer(answer: dict) -> tuple[object, list[str]]:
    """Start a restoring rollback in a thread, answer its approval form, return its state."""
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "state", rollback("flowtest", restore_backup=True, return_state=True)
        )
    )
    thread.start()
    deadline = time.monotonic() + 60
    paused = None
    while paused is None and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["rollback"]))
            )
        paused = next((r for r in runs if r.state and r.state.is_paused()), None)
        time.sleep(0.5)
    assert paused is not None, "the rollback paused for approval"
    resume_flow_run(paused.id, run_input=answer)
    thread.join(timeout=120)
    return result["state"], paused


def test_restore_happens_only_after_approval(fake, emitted, failed_release):
    state, _ = run_and_answer({"restore": True, "comment": "data is corrupt"})

    assert state.is_completed()
    assert "restore" in fake.calls


def test_restore_not_approved_leaves_the_database(fake, emitted, failed_release):
    state, _ = run_and_answer({"restore": False})

    assert state.is_completed()
    assert "restore" not in fake.calls
    assert fake.calls[:2] == ["deploy:frontend:v1", "deploy:backend:v1"]
