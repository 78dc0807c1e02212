"""The release flow's composition, over the FAKE target of conftest.py."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable

from domain.errors import ReleaseError, TransientError
from domain.records import ReleaseRecord
from domain.results import InfrastructureChange
from flows import events
from flows.release import release
from tasks.records import variable_name
from tests.flows.conftest import save_environment


def record_of(environment: str) -> ReleaseRecord:
    return ReleaseRecord.model_validate(Variable.get(variable_name(environment)))


def latest_report_rows() -> dict[str, str]:
    """The latest release report's rows, step -> result, as the Prefect UI shows them."""
    with get_client(sync_client=True) as client:
        steps = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["release-steps-flowtest"])),
            sort="CREATED_DESC",
            limit=1,
        )[0].data
    return {row["step"]: row["result"] for row in json.loads(steps)}


def names(emitted) -> list[str]:
    return [event for event, _, _ in emitted]


def test_steps_run_in_the_strategy_order(fake, emitted, source):
    result = release("flowtest", "v1", source)

    assert result["status"] == "succeeded"
    builds_and_pushes = sorted(fake.calls[2:6])
    assert builds_and_pushes == ["build:backend", "build:frontend", "push:backend", "push:frontend"]
    assert fake.calls[:2] == ["verify", "plan_infrastructure"]  # nothing proposed: no provision
    assert fake.calls[6:] == [
        "schema",
        "backup",
        "migrate:up",
        "deploy:backend:v1",
        "deploy:frontend:v1",
        "edge",
    ]
    assert names(emitted) == [events.RELEASE_STARTED, events.RELEASE_SUCCEEDED]
    _, resource, _ = emitted[0]
    assert resource["environment"] == "flowtest" and resource["version"] == "v1"


def test_record_is_written_before_the_first_change_and_names_what_ran_before(fake, emitted, source):
    release("flowtest", "v1", source)
    seen_at_backup: list[ReleaseRecord] = []
    fake.on_backup = lambda: seen_at_backup.append(record_of("flowtest"))

    release("flowtest", "v2", source)

    before = seen_at_backup[0]
    assert before.version == "v2" and before.status == "started"
    assert {name: rev.version for name, rev in before.previous.items()} == {
        "backend": "v1",
        "frontend": "v1",
    }
    assert before.schema_before == 2
    after = record_of("flowtest")
    assert after.status == "succeeded"
    assert after.backup is not None and after.backup.backup_id == after.release_id
    assert after.images == {
        "backend": "reg/backend:v2@sha256:dv2",
        "frontend": "reg/frontend:v2@sha256:dv2",
    }


def test_failed_migration_stops_before_any_service_changes(fake, emitted, source):
    fake.fail["migrate"] = ReleaseError("0002_bad.up.sql failed")

    state = release("flowtest", "v3", source, return_state=True)

    assert state.is_failed()
    assert not [c for c in fake.calls if c.startswith("deploy")]
    assert names(emitted) == [events.RELEASE_STARTED, events.RELEASE_FAILED]
    assert emitted[-1][2]["changed_environment"] is True
    assert "0002_bad.up.sql failed" in emitted[-1][2]["reason"]
    assert record_of("flowtest").status == "failed"


def test_failed_checks_fail_the_run_and_emit_checks_failed(fake, emitted, source):
    fake.served.status = 500

    state = release("flowtest", "v4", source, return_state=True)

    assert state.is_failed()
    assert names(emitted) == [events.RELEASE_STARTED, events.CHECKS_FAILED, events.RELEASE_FAILED]
    assert "HTTP 500" in emitted[1][2]["reason"]
    assert record_of("flowtest").status == "checks_failed"


def serving(fake) -> dict[str, str]:
    return {name: rev.version for name, rev in fake.live.items()}


def test_a_passed_release_stops_the_previous_revisions_only_after_its_checks_and_bake(
    fake, emitted, source
):
    release("flowtest", "v1", source)
    fake.timeline.clear()

    release("flowtest", "v2", source, bake_seconds=0.5)

    assert fake.timeline[-4:] == [
        "edge",
        "retire:backend",
        "retire:frontend",
        events.RELEASE_SUCCEEDED,
    ]
    assert fake.kept_running == {"backend": False, "frontend": False}


def test_failed_checks_switch_every_service_back_before_any_event_is_emitted(fake, emitted, source):
    release("flowtest", "v1", source)
    fake.served.status = 500
    fake.timeline.clear()

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    changes = [c for c in fake.timeline if c.startswith(("deploy", "retire"))]
    # forward in deploy order, back in reverse (the last one deployed is undone first), and
    # the failed revisions are stopped only once every service is back
    assert changes == [
        "deploy:backend:v2",
        "deploy:frontend:v2",
        "deploy:frontend:v1",
        "deploy:backend:v1",
        "retire:backend",
        "retire:frontend",
    ]
    assert fake.timeline.index("retire:frontend") < fake.timeline.index(events.CHECKS_FAILED)
    record = record_of("flowtest")
    assert record.status == "checks_failed" and record.switched_back


def test_a_failed_frontend_deploy_switches_the_backend_back(fake, emitted, source):
    """No new backend behind an old frontend: the done step is undone by the release itself."""
    release("flowtest", "v1", source)
    fake.fail["deploy:frontend:v2"] = ReleaseError("frontend v2 never became healthy")

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    assert record_of("flowtest").switched_back
    assert "frontend v2 never became healthy" in emitted[-1][2]["reason"]


def test_a_deploy_retried_after_its_switch_is_still_switched_back(fake, emitted, source):
    """The first attempt switched the frontend, then failed; the retry finds v2 live and changes
    nothing, and the undo must still take the frontend back to what served before the release."""
    release("flowtest", "v1", source)
    fake.served.status = 500
    fake.fail_after_switch["deploy:frontend:v2"] = TransientError("proxy config not written")
    fake.timeline.clear()

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    deploys = [c for c in fake.timeline if c.startswith("deploy")]
    assert deploys == [
        "deploy:backend:v2",
        "deploy:frontend:v2",
        "deploy:frontend:v2",  # the retry
        "deploy:frontend:v1",
        "deploy:backend:v1",
    ]
    assert record_of("flowtest").switched_back


def test_a_transient_deploy_failure_is_retried_without_undoing_the_services_before_it(
    fake, emitted, source
):
    """Prefect rolls a transaction back on any failed attempt of a task in it, retried or not:
    the deploy retries within its attempt, so the backend stays on v2 and the release passes."""
    release("flowtest", "v1", source)
    fake.fail_after_switch["deploy:frontend:v2"] = TransientError("engine restarting")
    fake.timeline.clear()

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_completed(), state.message
    assert serving(fake) == {"backend": "v2", "frontend": "v2"}
    assert [c for c in fake.timeline if c.startswith("deploy")] == [
        "deploy:backend:v2",
        "deploy:frontend:v2",
        "deploy:frontend:v2",
    ]


def test_a_release_that_fails_before_its_first_switch_says_nothing_was_switched(
    fake, emitted, source
):
    release("flowtest", "v1", source)
    fake.fail["deploy:backend:v2"] = ReleaseError("backend v2 never became healthy")
    fake.timeline.clear()

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    assert [c for c in fake.timeline if c.startswith(("deploy", "retire"))] == ["deploy:backend:v2"]
    assert not record_of("flowtest").switched_back
    assert latest_report_rows()["switch back"] == (
        "no service had switched: each serves what it served before"
    )


def test_a_switch_back_that_fails_is_recorded_and_left_to_the_rollback_run(fake, emitted, source):
    release("flowtest", "v1", source)
    fake.served.status = 500
    fake.fail["deploy:frontend:v1"] = ReleaseError("frontend v1 did not start")

    state = release("flowtest", "v2", source, return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v2"}  # one undo failed, not both
    record = record_of("flowtest")
    assert not record.switched_back and record.changed_environment
    assert names(emitted)[-2:] == [events.CHECKS_FAILED, events.RELEASE_FAILED]


def test_failure_before_any_change_says_nothing_changed(fake, emitted, source):
    fake.fail["build"] = ReleaseError("no Dockerfile")

    state = release("flowtest", "v5", source, return_state=True)

    assert state.is_failed()
    assert fake.calls[-1].startswith("build")
    assert emitted[-1][0] == events.RELEASE_FAILED
    assert emitted[-1][2]["changed_environment"] is False
    assert not [c for c in fake.calls if c.startswith(("backup", "migrate"))]


def test_digits_only_version_stays_a_string(fake, emitted, source):
    release("flowtest", 20261126, source)

    assert record_of("flowtest").version == "20261126"
    assert fake.live["backend"].version == "20261126"


@pytest.mark.parametrize("version", ["latest", "has space", "-x"])
def test_malformed_version_fails_before_anything_runs(fake, emitted, source, version):
    with pytest.raises(ReleaseError, match="not usable as an image tag"):
        release("flowtest", version, source)
    assert fake.calls == []


def test_unknown_environment_names_the_known_ones_and_how_to_add_it(fake, emitted, source):
    with pytest.raises(ReleaseError) as error:
        release("nowhere", "v1", source)

    assert str(error.value) == (
        "unknown environment 'nowhere': no 'Flowmasters Environment' block of that name "
        "(known: flowtest). Describe it in deployments/environments/nowhere.yaml and run "
        "`python -m deployments.register nowhere`."
    )
    assert fake.calls == []


def test_a_release_reads_the_environment_block_once(fake, emitted, source, block_reads):
    fake.proposal = InfrastructureChange(
        target="fake", kind="UPDATE", change_id="cs-1", summary="one change", changes=1
    )

    state = release("flowtest", "v7", source, bake_seconds=0.5, return_state=True)

    assert state.is_completed(), state.message
    assert "provision:cs-1" in fake.calls  # provisioning changes the infrastructure, not the block
    assert block_reads == {"flowmasters-environment": 1}


def test_a_failure_during_the_bake_window_fails_the_release_and_emits_checks_failed(
    fake, emitted, source
):
    # The smoke checks (0.3 s window, at most 4 rounds of 2 probes) pass; the version starts
    # answering 500 after 20 requests, inside the 5 s bake window.
    fake.served.fail_after = fake.served.requests + 20

    state = release("flowtest", "v6", source, bake_seconds=5, return_state=True)

    assert state.is_failed()
    assert names(emitted) == [events.RELEASE_STARTED, events.CHECKS_FAILED, events.RELEASE_FAILED]
    assert record_of("flowtest").status == "checks_failed"
    rows = latest_report_rows()
    assert "passed" in rows["smoke checks"]
    assert rows["bake"].startswith("FAILED")


def test_a_rerun_after_the_block_was_edited_reuses_the_backup(fake, emitted, source, served):
    fake.fail["deploy"] = ReleaseError("frontend never became healthy")
    assert release("flowtest", "v8", source, return_state=True).is_failed()
    assert fake.calls.count("backup") == 1
    save_environment(served, keep_revisions=5)  # a person edits the block, then retries
    del fake.fail["deploy"]

    try:
        state = release("flowtest", "v8", source, return_state=True)
    finally:
        save_environment(served)

    assert state.is_completed(), state.message
    assert fake.calls.count("backup") == 1, "the pre-release backup is the one kept"
    assert fake.calls.count("build:backend") == 1
