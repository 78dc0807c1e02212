"""The release flow's composition, over the FAKE target of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable

from blocks.environment_block import FlowmastersEnvironment
from domain.errors import ReleaseError, TransientError
from domain.records import ReleaseRecord
from domain.results import InfrastructureChange
from domain.rollout import RolloutSpec
from flows import events
from flows.release import release
from tasks.caching import STEP_CACHE, ResultModels
from tasks.records import variable_name
from tests.flows.conftest import code, save_environment


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
    result = release("flowtest", "v1", code(source, "v1"))

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
    release("flowtest", "v1", code(source, "v1"))
    seen_at_backup: list[ReleaseRecord] = []
    fake.on_backup = lambda: seen_at_backup.append(record_of("flowtest"))

    release("flowtest", "v2", code(source, "v2"))

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

    state = release("flowtest", "v3", code(source, "v3"), return_state=True)

    assert state.is_failed()
    assert not [c for c in fake.calls if c.startswith("deploy")]
    assert names(emitted) == [events.RELEASE_STARTED, events.RELEASE_FAILED]
    assert emitted[-1][2]["changed_environment"] is True
    assert "0002_bad.up.sql failed" in emitted[-1][2]["reason"]
    assert record_of("flowtest").status == "failed"


def test_failed_checks_fail_the_run_and_emit_checks_failed(fake, emitted, source):
    fake.served.status = 500

    state = release("flowtest", "v4", code(source, "v4"), return_state=True)

    assert state.is_failed()
    assert names(emitted) == [events.RELEASE_STARTED, events.CHECKS_FAILED, events.RELEASE_FAILED]
    assert "HTTP 500" in emitted[1][2]["reason"]
    assert record_of("flowtest").status == "checks_failed"


def serving(fake) -> dict[str, str]:
    return {name: rev.version for name, rev in fake.live.items()}


def test_a_passed_release_stops_the_previous_revisions_only_after_its_checks_and_bake(
    fake, emitted, source
):
    release("flowtest", "v1", code(source, "v1"))
    fake.timeline.clear()

    release("flowtest", "v2", code(source, "v2"), bake_seconds=0.5)

    assert fake.timeline[-4:] == [
        "edge",
        "retire:backend",
        "retire:frontend",
        events.RELEASE_SUCCEEDED,
    ]
    assert fake.kept_running == {"backend": False, "frontend": False}


def test_failed_checks_switch_every_service_back_before_any_event_is_emitted(fake, emitted, source):
    release("flowtest", "v1", code(source, "v1"))
    fake.served.status = 500
    fake.timeline.clear()

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

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
    release("flowtest", "v1", code(source, "v1"))
    fake.fail["deploy:frontend:v2"] = ReleaseError("frontend v2 never became healthy")

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    assert record_of("flowtest").switched_back
    assert "frontend v2 never became healthy" in emitted[-1][2]["reason"]


def test_a_deploy_retried_after_its_switch_is_still_switched_back(fake, emitted, source):
    """The first attempt switched the frontend, then failed; the retry finds v2 live and changes
    nothing, and the undo must still take the frontend back to what served before the release."""
    release("flowtest", "v1", code(source, "v1"))
    fake.served.status = 500
    fake.fail_after_switch["deploy:frontend:v2"] = TransientError("proxy config not written")
    fake.timeline.clear()

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

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
    release("flowtest", "v1", code(source, "v1"))
    fake.fail_after_switch["deploy:frontend:v2"] = TransientError("engine restarting")
    fake.timeline.clear()

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

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
    release("flowtest", "v1", code(source, "v1"))
    fake.fail["deploy:backend:v2"] = ReleaseError("backend v2 never became healthy")
    fake.timeline.clear()

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v1"}
    assert [c for c in fake.timeline if c.startswith(("deploy", "retire"))] == ["deploy:backend:v2"]
    assert not record_of("flowtest").switched_back
    assert latest_report_rows()["switch back"] == (
        "no service had switched: each serves what it served before"
    )


def test_a_switch_back_that_fails_is_recorded_and_left_to_the_rollback_run(fake, emitted, source):
    release("flowtest", "v1", code(source, "v1"))
    fake.served.status = 500
    fake.fail["deploy:frontend:v1"] = ReleaseError("frontend v1 did not start")

    state = release("flowtest", "v2", code(source, "v2"), return_state=True)

    assert state.is_failed()
    assert serving(fake) == {"backend": "v1", "frontend": "v2"}  # one undo failed, not both
    record = record_of("flowtest")
    assert not record.switched_back and record.changed_environment
    assert names(emitted)[-2:] == [events.CHECKS_FAILED, events.RELEASE_FAILED]


def test_failure_before_any_change_says_nothing_changed(fake, emitted, source):
    fake.fail["build"] = ReleaseError("no Dockerfile")

    state = release("flowtest", "v5", code(source, "v5"), return_state=True)

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

    state = release("flowtest", "v7", code(source, "v7"), bake_seconds=0.5, return_state=True)

    assert state.is_completed(), state.message
    assert "provision:cs-1" in fake.calls  # provisioning changes the infrastructure, not the block
    assert block_reads == {"flowmasters-environment": 1}


def test_a_failure_during_the_bake_window_fails_the_release_and_emits_checks_failed(
    fake, emitted, source
):
    # The smoke checks (0.3 s window, at most 4 rounds of 2 probes) pass; the version starts
    # answering 500 after 20 requests, inside the 5 s bake window.
    fake.served.fail_after = fake.served.requests + 20

    state = release("flowtest", "v6", code(source, "v6"), bake_seconds=5, return_state=True)

    assert state.is_failed()
    assert names(emitted) == [events.RELEASE_STARTED, events.CHECKS_FAILED, events.RELEASE_FAILED]
    assert record_of("flowtest").status == "checks_failed"
    rows = latest_report_rows()
    assert "passed" in rows["smoke checks"]
    assert rows["bake"].startswith("FAILED")


def test_a_rerun_after_the_block_was_edited_reuses_the_backup(fake, emitted, source, served):
    fake.fail["deploy"] = ReleaseError("frontend never became healthy")
    assert release("flowtest", "v8", code(source, "v8"), return_state=True).is_failed()
    assert fake.calls.count("backup") == 1
    save_environment(served, keep_revisions=5)  # a person edits the block, then retries
    del fake.fail["deploy"]

    try:
        state = release("flowtest", "v8", code(source, "v8"), return_state=True)
    finally:
        save_environment(served)

    assert state.is_completed(), state.message
    assert fake.calls.count("backup") == 1, "the pre-release backup is the one kept"
    assert fake.calls.count("build:backend") == 1


def test_a_release_where_only_the_frontend_changed_builds_and_deploys_only_the_frontend(
    fake, emitted, source, served
):
    release("flowtest", "v1", code(source, "v1"))
    fake.calls.clear()

    result = release("flowtest", "fe-2", code(source, "fe-2", services=("frontend",)))

    assert result["status"] == "succeeded"
    assert [c for c in fake.calls if c.startswith(("build", "push", "deploy"))] == [
        "build:frontend",
        "push:frontend",
        "deploy:frontend:fe-2",
    ]
    assert served.versions == {"backend": "v1", "frontend": "fe-2"}  # what the checks expected
    rows = latest_report_rows()
    assert rows["deploy backend"] == "kept v1: it serves an image of this source already"
    assert record_of("flowtest").images == {
        "backend": "reg/backend:v1@sha256:dv1",
        "frontend": "reg/frontend:fe-2@sha256:dfe-2",
    }


def test_a_release_with_nothing_changed_changes_nothing_and_says_so(fake, emitted, source):
    migrations = Path(source) / "backend" / "migrations"
    migrations.mkdir()
    (migrations / "0001_init.up.sql").write_text("SELECT 1;\n")
    fake.applied, fake.reported_pending = (1,), ()  # the database has every migration
    release("flowtest", "v1", code(source, "v1"))
    fake.calls.clear()

    result = release("flowtest", "v1-again", code(source, "v1"))

    assert result["status"] == "succeeded"
    assert fake.calls == ["verify", "plan_infrastructure", "schema", "schema"]  # reads only
    rows = latest_report_rows()
    assert rows["build"] == "backend, frontend kept: served already, built from this source"
    assert rows["backup"].startswith("not taken")
    assert rows["migrate"].startswith("nothing pending")
    assert rows["deploy backend"].startswith("kept v1")
    assert rows["deploy frontend"].startswith("kept v1")
    assert "1 round passed (nothing changed" in rows["smoke checks"]
    record = record_of("flowtest")
    assert record.backup is None and not record.changed_environment


def test_a_kept_service_that_moved_before_the_lock_stops_the_release(fake, emitted, source):
    """Another release switched the backend while this one built: keeping it would leave it on a
    revision this release never planned."""
    release("flowtest", "v1", code(source, "v1"))
    fake.on_build = lambda: fake.live.update(
        backend=fake.live["backend"].model_copy(update={"version": "x", "image_id": "id-x"})
    )

    state = release(
        "flowtest", "fe-3", code(source, "fe-3", services=("frontend",)), return_state=True
    )

    assert state.is_failed()
    assert "backend serves x, not v1 since this release was planned" in state.message
    assert not any(c.startswith(("backup", "migrate", "deploy")) for c in fake.calls[-6:])


def test_after_the_result_models_change_the_cached_steps_run_again(
    fake, emitted, source, monkeypatch
):
    """A cache record is a pickled result: after an upgrade changes its model (a new field), an
    old record would load without it. The steps then build and push again instead."""
    release("flowtest", "v-cache", code(source, "v-cache"))
    models = next(p for p in STEP_CACHE.policies if isinstance(p, ResultModels))
    monkeypatch.setattr(models, "digest", "an-upgrade-changed-domain/results.py")
    fake.live.clear()  # nothing kept: the release must build (or find its cache records)
    fake.calls.clear()

    state = release("flowtest", "v-cache", code(source, "v-cache"), return_state=True)

    assert state.is_completed(), state.message
    assert sorted(c for c in fake.calls if c.startswith(("build", "push"))) == [
        "build:backend",
        "build:frontend",
        "push:backend",
        "push:frontend",
    ]


def test_a_canary_on_a_target_without_one_is_refused_before_anything_changes(
    fake, emitted, source, served
):
    release("flowtest", "v1", code(source, "v1"))  # a stable version to compare a canary with
    block = FlowmastersEnvironment.load("flowtest")
    canary = RolloutSpec(strategy="canary")
    block.services = [
        s.model_copy(update={"rollout": canary}) if s.name == "frontend" else s
        for s in block.services
    ]
    block.save("flowtest", overwrite=True)
    fake.calls.clear()
    try:
        state = release("flowtest", "v2", code(source, "v2"), return_state=True)
    finally:
        save_environment(served)

    assert state.is_failed()
    assert "frontend declares a canary rollout, which the fake target does not run yet" in (
        state.message or ""
    )
    assert "rollout: {strategy: blue-green}" in (state.message or "")
    assert not [c for c in fake.calls if c.startswith(("build", "push", "deploy", "migrate"))]
    assert record_of("flowtest").version == "v1"
