"""Rollback on a real Docker-host environment: services back, migrations down, under load."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from flows.release import release
from flows.rollback import rollback
from testbed.scratch import new_code
from testbed.wrk import Wrk
from tests.integration.flows.test_release_docker_host import MIGRATION_2, MIGRATION_2_DOWN, serving


def test_rollback_with_migrate_down_returns_code_and_schema(environment):
    assert release(
        environment.name, "v1", str(new_code(environment.source, "v1")), return_state=True
    ).is_completed()
    migrations = environment.source / "backend" / "migrations"
    (migrations / "0002_page_summary.up.sql").write_text(MIGRATION_2)
    (migrations / "0002_page_summary.down.sql").write_text(MIGRATION_2_DOWN)
    assert release(
        environment.name, "v2", str(new_code(environment.source, "v2")), return_state=True
    ).is_completed()
    assert serving(environment) == ("v2", "v2", 2)

    with Wrk(environment.url("frontend") + "/api/backend", connections=10) as load:
        result = rollback(environment.name, migrate_down=True, reason="test")

    assert result["status"] == "rolled back"
    assert load.stop().failed == 0, load.stop().summary()
    assert load.stop().rate >= 20, load.stop().summary()
    # The backend caches its schema version for 1 s (examples/flowmasters): allow it to expire.
    deadline = time.monotonic() + 5
    while serving(environment) != ("v1", "v1", 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert serving(environment) == ("v1", "v1", 1)
    assert environment.record().status == "rolled_back"
    running = {
        c.labels["flowmasters.version"] for c in environment.containers() if c.status == "running"
    }
    assert running == {"v1"}


def test_rollback_again_changes_nothing_and_says_so(environment):
    before = {c.id for c in environment.containers() if c.status == "running"}

    state = rollback(environment.name, return_state=True)

    assert state.is_completed() and "already rolled back" in state.message
    assert {c.id for c in environment.containers() if c.status == "running"} == before


def test_release_from_a_git_repository_takes_its_commit_as_version(environment, tmp_path):
    repo = tmp_path / "app"
    subprocess.run(["cp", "-r", str(environment.source), str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "app"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)

    # The release keeps its checkout, named by the commit, for the next build of that commit;
    # this commit is the test's own, so its checkout goes with the test (runs leave no growth).
    checkout = Path(tempfile.gettempdir()) / "flowmasters-checkouts" / sha.stdout.strip()
    try:
        result = release(environment.name, source=".", git_repository=str(repo), git_ref="main")
    finally:
        shutil.rmtree(checkout, ignore_errors=True)

    version = sha.stdout.strip()[:12]
    assert result["version"] == version
    assert serving(environment)[:2] == (version, version)
