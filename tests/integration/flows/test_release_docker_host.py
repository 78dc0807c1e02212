"""Releases of the sample app to a real Docker-host environment, in the order a team would do them.

The tests of this module share one environment and run in file order: each starts from what the
previous one left (v1, then v2 with a migration, ...).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.variables import Variable

from blocks.environment import load_environment
from deployments.register import load_description
from flows import events
from flows.release import release
from targets.docker_host import proxy
from tasks.records import variable_name
from testbed.scratch import app_psql, new_code
from testbed.wrk import Wrk
from tests.integration.conftest import TestEnvironment, read_events, run_texts, task_states
from tests.support.block_reads import count_block_reads

MIGRATION_2 = "ALTER TABLE pages ADD COLUMN summary text NOT NULL DEFAULT '';\n"
MIGRATION_2_DOWN = "ALTER TABLE pages DROP COLUMN summary;\n"


def run(env: TestEnvironment, version: str, **build_args: str):
    state = release(
        env.name, version, str(new_code(env.source, version)), build_args, return_state=True
    )
    env.runs.append(state.state_details.flow_run_id)
    return state, state.state_details.flow_run_id


def serving(env: TestEnvironment) -> tuple[str, str, int]:
    """(frontend version, backend version as the frontend sees it, schema version)."""
    body = httpx.get(env.url("frontend") + "/api/backend", timeout=5).json()
    return body["frontend_version"], body["backend"]["version"], body["backend"]["schema_version"]


def test_dry_run_publishes_the_plan_and_changes_nothing(environment: TestEnvironment):
    result = release(environment.name, "v1", str(environment.source), dry_run=True)

    assert result["status"] == "dry-run"
    plan = result["plan"]
    assert [(s["service"], s["current"], s["next"], s["to_build"]) for s in plan["services"]] == [
        ("backend", "nothing", "v1", True),
        ("frontend", "nothing", "v1", True),
    ]
    assert plan["pending_migrations"] == [1]
    assert environment.containers() == []
    assert Variable.get(variable_name(environment.name), default=None) is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(environment.url("frontend") + "/", timeout=2).raise_for_status()


def test_first_release_to_an_empty_environment(environment: TestEnvironment, monkeypatch):
    reads = count_block_reads(monkeypatch)

    state, _ = run(environment, "v1")

    assert state.is_completed(), state.message
    # One read of the environment (its target's blocks come nested in it), though this release
    # also provisioned the environment's load balancer.
    assert reads == {"flowmasters-environment": 1}
    assert serving(environment) == ("v1", "v1", 1)
    record = environment.record()
    assert record.status == "succeeded"
    assert record.previous == {"backend": None, "frontend": None}
    backup = Path(record.backup.location)
    assert backup.is_file() and oct(backup.stat().st_mode)[-3:] == "600"
    listing = subprocess.run(
        ["pg_restore", "--list", str(backup)], capture_output=True, check=False
    )
    assert listing.returncode == 0
    with get_client(sync_client=True) as client:
        provisioned = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"provision-{environment.name}"])
            )
        )
    assert provisioned and "load balancer config" in provisioned[0].data


def test_release_with_a_migration_drops_no_request(environment: TestEnvironment):
    migrations = environment.source / "backend" / "migrations"
    (migrations / "0002_page_summary.up.sql").write_text(MIGRATION_2)
    (migrations / "0002_page_summary.down.sql").write_text(MIGRATION_2_DOWN)

    # wrk, from its own process: 10 connections, each pausing 100 ms between requests, through
    # the frontend to the backend (both switch, and the migration runs, under this load).
    with Wrk(environment.url("frontend") + "/api/backend", connections=10) as load:
        state, _ = run(environment, "v2")

    assert state.is_completed(), state.message
    result = load.stop()
    print(f"\nunder load: {result.summary()}")
    assert result.failed == 0, result.summary()
    assert result.rate >= 20, result.summary()
    assert serving(environment) == ("v2", "v2", 2)
    record = environment.record()
    assert {k: v.version for k, v in record.previous.items()} == {"backend": "v1", "frontend": "v1"}
    assert (record.schema_before, record.schema_after) == (1, 2)
    kept = environment.containers(version="v1")
    assert len(kept) == 2 and {c.status for c in kept} == {"exited"}, "v1 is kept for rollback"


def test_same_release_again_builds_pushes_and_backs_up_nothing(environment: TestEnvironment):
    before = {c.id for c in environment.containers() if c.status == "running"}
    release_id = environment.record().release_id

    state, flow_run_id = run(environment, "v2")

    assert state.is_completed(), state.message
    states = task_states(flow_run_id)
    changing = ("build-", "push-", "backup-", "run-migrations", "deploy-", "update-edge")
    assert [name for name in states if name.startswith(changing)] == []
    assert {c.id for c in environment.containers() if c.status == "running"} == before
    assert environment.record().release_id == release_id
    assert environment.record().schema_after == 2
    assert serving(environment) == ("v2", "v2", 2)
    reported = "\n".join(run_texts([flow_run_id]))
    assert "| build | backend, frontend kept: served already, built from this source |" in reported
    assert "| backup | not taken: no migration runs and no service" in reported
    assert "| migrate | nothing pending (applied now: [1, 2]): not run |" in reported
    assert "| deploy backend | kept v2: it serves an image of this source already |" in reported
    assert "probes x 1 round passed (nothing changed; v2 passed its checks" in reported


def test_a_releases_backup_is_never_replaced_by_a_later_dump(environment: TestEnvironment):
    target = load_environment(environment.name).connect()
    first = target.backup_database("it-keep-this-backup")
    taken = Path(first.location).read_bytes()
    database = environment.description["target"]["database"]["database"]
    app_psql("CREATE TABLE written_after_the_backup (x int)", database=database)
    try:
        again = target.backup_database("it-keep-this-backup")  # a re-run, its cache record lost
    finally:
        app_psql("DROP TABLE written_after_the_backup", database=database)

    assert again == first
    assert Path(again.location).read_bytes() == taken


def test_a_retried_deploy_finishes_a_switch_left_half_done(environment: TestEnvironment):
    """A deploy that put the new slot in rotation and failed before parking the old one leaves
    both serving, users getting either version. Its retry must end with only the new one."""
    target = load_environment(environment.name).connect()
    backend = proxy.backend_name(environment.name, "backend")
    live = proxy.live_slot(target.admin.states(), backend)
    revision = target.live_revision("backend")
    assert live is not None and revision is not None and revision.version == "v2"
    other = 1 - live
    kept = environment.containers(service="backend", slot=str(other))[0]  # the newest
    try:
        kept.start()  # the old revision, still running and in rotation: the switch stopped here
        target.admin.set_state(backend, other, "ready")
        target.admin.wait_for(
            "both slots serving",
            lambda s: proxy.is_serving(s[(backend, proxy.server_name(other))].status),
            timeout=30,
        )

        result = target.deploy_service("backend", revision.image, revision.version)
    finally:
        states = target.admin.states()
        if proxy.in_rotation(states[(backend, proxy.server_name(other))]):
            target.admin.park(backend, other)  # leave the module's next tests a sound switch

    assert result.current.version == "v2"
    assert states[(backend, proxy.server_name(other))].status.startswith("MAINT")
    assert proxy.is_serving(states[(backend, proxy.server_name(live))].status)
    assert serving(environment) == ("v2", "v2", 2)


def test_failing_migration_stops_the_release_and_v2_keeps_serving(environment: TestEnvironment):
    migrations = environment.source / "backend" / "migrations"
    bad = migrations / "0003_broken.up.sql"
    bad.write_text("ALTER TABLE no_such_table ADD COLUMN x int;\n")
    (migrations / "0003_broken.down.sql").write_text("SELECT 1;\n")
    try:
        state, _ = run(environment, "v3")
    finally:
        bad.unlink()
        (migrations / "0003_broken.down.sql").unlink()

    assert state.is_failed()
    assert "0003_broken" in state.message and "no_such_table" in state.message
    assert serving(environment) == ("v2", "v2", 2)
    assert not environment.containers(version="v3"), "no v3 container was started"


def test_missing_dockerfile_is_named_and_nothing_changes(environment: TestEnvironment):
    dockerfile = environment.source / "frontend" / "Dockerfile"
    saved = dockerfile.read_text()
    dockerfile.unlink()
    try:
        state, _ = run(environment, "v4")
    finally:
        dockerfile.write_text(saved)

    assert state.is_failed()
    assert "no Dockerfile at" in state.message and "frontend" in state.message
    assert serving(environment) == ("v2", "v2", 2)


def test_version_failing_its_checks_ends_failed_and_emits_checks_failed(
    environment: TestEnvironment,
):
    # Health answers 200 for 5 s after start (the deploy gate passes), then 500: the smoke checks,
    # which probe for a window, must catch it.
    v2 = {c.id for c in environment.containers(version="v2") if c.status == "running"}

    state, flow_run_id = run(environment, "v5-broken", BREAK_AFTER_SECONDS="5")

    assert state.is_failed()
    assert "smoke checks failed for v5-broken" in state.message
    record = environment.record()
    assert record.status == "checks_failed"
    # The release switched back itself, to the v2 containers it kept running: not restarted.
    assert record.switched_back
    assert serving(environment) == ("v2", "v2", 2)
    assert {c.id for c in environment.containers(version="v2") if c.status == "running"} == v2
    assert {c.status for c in environment.containers(version="v5-broken")} == {"exited"}
    reported = "\n".join(run_texts([flow_run_id]))
    assert "| switch back | every service serves what it served before |" in reported
    found = read_events(
        "flowmasters.release.",
        f"flowmasters.environment.{environment.name}",
        expect=events.CHECKS_FAILED,
    )
    checks_failed = [e for e in found if e["event"] == events.CHECKS_FAILED]
    assert checks_failed, f"no checks-failed event among {[e['event'] for e in found]}"
    assert checks_failed[0]["resource"]["version"] == "v5-broken"
    assert checks_failed[0]["resource"]["environment"] == environment.name


def test_no_secret_in_logs_artifacts_or_the_record(environment: TestEnvironment):
    password_file = Path(load_description("sandbox")["target"]["database"]["password_file"])
    password = password_file.read_text().strip()
    assert len(environment.runs) >= 5

    texts = run_texts(environment.runs)

    assert len(texts) > 50, "the runs' logs and artifacts were read"
    assert not [t for t in texts if password in t]
    assert password not in environment.record().model_dump_json()


def test_a_release_of_the_frontend_alone_builds_and_restarts_only_the_frontend(
    environment: TestEnvironment,
):
    backend = {c.id for c in environment.containers(service="backend") if c.status == "running"}
    new_code(environment.source, "v2")  # the code v2 serves (the broken v5 was rolled back)
    new_code(environment.source, "v2-frontend", services=("frontend",))

    state = release(environment.name, "v2-frontend", str(environment.source), return_state=True)

    assert state.is_completed(), state.message
    environment.runs.append(state.state_details.flow_run_id)
    states = task_states(state.state_details.flow_run_id)
    assert sorted(n for n in states if n.startswith(("build-", "push-", "deploy-"))) == [
        "build-frontend",
        "deploy-frontend-v2-frontend",
        "push-frontend",
    ]
    assert serving(environment) == ("v2-frontend", "v2", 2)  # the backend keeps its version
    running = {c.id for c in environment.containers(service="backend") if c.status == "running"}
    assert running == backend, "the backend was not restarted"
    record = environment.record()
    assert record.backup is None, "no migration, and the database's users did not change"
    assert record.images["backend"].startswith(f"{environment.description['target']['registry']}")
    assert ":v2@" in record.images["backend"] and ":v2-frontend@" in record.images["frontend"]
