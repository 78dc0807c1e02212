"""The fault matrix on the real stack (examples/flowmasters-payload: Payload CMS 3 and Next.js):
one scratch environment described like `local`, whose registry, Docker engine and PostgreSQL are
reached through fault proxies, with an editor's page in Payload from before the faults.

The first cases release a change to the frontend only, as most releases of a site are: the
backend is kept (not built, pushed or deployed) and its content must not move. The real images are what
makes this worth running apart from the stand-ins: the frontend's Next.js image has many large
layers, so a flaky registry meets many more requests, and the app's health and versions are
Next.js's and Payload's own.

- the registry answers 503 to 20 % of requests: released through the request-level retries, no
  layer uploaded twice once it was;
- the release's process (a worker's run, the warm launcher's child) SIGKILLed while the frontend
  deploys: the run is Crashed, and the crash rollback returns the environment to one version.
  The rollback is started by the test with the parameters the automation passes: a scratch
  environment has no automation of its own; the automation itself is tested on `sandbox`
  (test_killed_release.py, tests/e2e/test_crash_rollback.py);
- a backend change with a migration (tests/fixtures/payload/v2) while the database closes the
  migrations' first connection: the sample app's scripts/migrate.mjs exits 75 before Payload
  runs, the step retries, and Payload applies the migration: released. (Payload's CLI alone
  exits 1, final by the migration contract: README, "Migrations".) One case only: each release
  with a migration costs a build of the backend, about two minutes here. It is also the release
  that proves the environment works after the faults before it;
- Redis (the frontend's shared cache) stopped as the new frontend starts, under load that passes
  the CDN: released, no request failed (the frontends serve from their own memory meanwhile),
  and Redis is used again once the stack has started it.

The other faults of the matrix (a refused container, a failed backup, each step killed) depend on
the pipeline, not on the app, and run on the stand-ins (test_dependency_faults.py,
test_killed_release.py), where a release takes seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.variables import Variable

from domain.records import ReleaseRecord
from flows.release import release
from flows.rollback import rollback
from tasks.records import variable_name
from testbed.scratch import (
    Scratch,
    app_query,
    create_environment,
    deploy_like,
    lock_note,
    lock_slots,
    new_code,
    remove_environment,
)
from testbed.wrk import Wrk
from tests.e2e.conftest import run_pid, start, task_seen, wait_final, wait_until
from tests.faults.conftest import Proxies
from tests.faults.test_registry import UPLOAD_DONE
from tests.integration.conftest import TestEnvironment
from tests.support import stack
from tests.support.matrix import MATRIX, Row
from tests.support.payload import REAL_STACK, V1, V2, Editor

pytestmark = [pytest.mark.integration, REAL_STACK]

SHARE = 0.2
OVERLAYS = Path(__file__).resolve().parents[1] / "fixtures" / "payload"
SUMMARY = "20261202_044927_page_summary"  # the v2 overlay's migration
MIGRATE_SESSION = "flowmasters-migrate"  # PGAPPNAME of the migration command's container


@pytest.fixture(scope="module")
def cms(tmp_path_factory: pytest.TempPathFactory, proxies: Proxies) -> Iterator[Scratch]:
    scratch = create_environment(
        "it-cmsfault",
        tmp_path_factory.mktemp("cmsfault"),
        app="flowmasters-payload",
        base_on="local",
        edit=proxies.through(checks_window=2),
    )
    try:
        deploy_like(scratch.name, template="local")
        first = release(scratch.name, V1, str(new_code(scratch.source, V1)), return_state=True)
        assert first.is_completed(), first.message
        editor = Editor(site(scratch).url("backend"))
        editor.sign_up()
        editor.add_page(title="Before the faults", slug=f"before-{scratch.name}")
        yield scratch
    finally:
        proxies.clear()
        remove_environment(scratch.name, scratch.database)


def site(env: Scratch) -> TestEnvironment:
    return TestEnvironment(env.name, env.source, env.description)


def serving(env: Scratch) -> tuple[str, str, str]:
    """(backend, frontend, the backend as the frontend reaches it), from their health answers."""
    front, back = site(env).health("frontend"), site(env).health("backend")
    return back["version"], front["version"], front["backend"]["version"]


def pages(env: Scratch) -> int:
    return int(app_query("SELECT count(*) FROM pages", env.database))


def frontend_change(env: Scratch, version: str) -> str:
    return str(new_code(env.source, version, services=("frontend",)))


def record(env: Scratch) -> ReleaseRecord:
    return ReleaseRecord.model_validate(Variable.get(variable_name(env.name)))


def add_row(fault: str, step: str, env: Scratch, before: tuple, now: tuple, version: str,
            lost: int, took: float, note: str) -> None:  # fmt: skip
    ends = "old" if now == before else "new" if now[1] == version else f"MIXED {now}"
    MATRIX.append(
        Row(
            fault=f"real stack: {fault}",
            step=step,
            end_state=f"services {ends} (backend kept at {now[0]})",
            rows_lost=lost,
            recovered_s=took,
            note=f"{lock_note(env.name)}; {note}",
        )
    )


def test_a_real_frontend_through_a_registry_failing_a_fifth_of_requests(cms, proxies):
    before, rows = serving(cms), pages(cms)
    proxies.registry.log.clear()
    proxies.registry.share_503 = SHARE
    started = time.monotonic()
    try:
        state = release(cms.name, "flaky", frontend_change(cms, "flaky"), return_state=True)
    finally:
        proxies.clear()
    took = time.monotonic() - started
    now, lost = serving(cms), rows - pages(cms)
    log = proxies.registry.log
    uploads = Counter(
        m["digest"]
        for e in log
        if e.method == "PUT" and e.status == 201 and (m := UPLOAD_DONE.match(e.path))
    )
    twice = {digest: n for digest, n in uploads.items() if n > 1}
    faulted = sum(e.faulted for e in log)
    add_row(f"registry answers 503 to {SHARE:.0%} of requests", "verify, push (frontend)", cms,
            before, now, "flaky", lost, took,
            f"{faulted} of {len(log)} requests failed; {len(uploads)} layers uploaded, "
            f"{len(twice)} twice; " + ("released" if state.is_completed() else str(state.message)[:150]))  # fmt: skip
    assert state.is_completed(), state.message
    assert now == (before[0], "flaky", before[0]), now  # the backend kept, the frontend new
    assert lost == 0
    assert faulted > 0, "the proxy failed no request: nothing was tested"
    assert twice == {}, f"layers uploaded again after they were in the registry: {twice}"
    assert record(cms).status == "succeeded"


def test_a_real_release_killed_while_its_frontend_deploys(cms):
    before, rows = serving(cms), pages(cms)
    run = start(f"release/{cms.name}", version="killed", source=frontend_change(cms, "killed"))
    at_kill = wait_until(
        "the frontend's deploy", lambda: task_seen(run.id, "deploy-frontend-", 1), every=0.05
    )
    os.kill(run_pid(run.id), signal.SIGKILL)
    killed = time.monotonic()
    ended = wait_final(run.id, timeout=120)
    result = rollback(
        cms.name,
        reason=f"release run {ended.name} crashed",
        crashed_run=f"prefect.flow-run.{run.id}",
    )
    took = time.monotonic() - killed
    now, lost = serving(cms), rows - pages(cms)
    add_row("release process killed (SIGKILL)", "deploy frontend (a worker's run)", cms, before,
            now, "killed", lost, took,
            f"killed with the deploy {at_kill}; run {ended.state.name}; rollback: "
            f"{result.get('status')}")  # fmt: skip
    assert ended.state.name == "Crashed", ended.state
    assert now in (before, (before[0], "killed", before[0])), now  # one version, either one
    assert lost == 0
    assert lock_slots(cms.name) == 0


def test_payload_migrating_while_the_database_drops_its_first_connection(cms, proxies):
    before, rows = serving(cms), pages(cms)
    shutil.copytree(OVERLAYS / "v2", cms.source, dirs_exist_ok=True)  # a migration: page summary
    new_code(cms.source, before[1], services=("frontend",))  # the frontend's code as it serves
    source = str(new_code(cms.source, V2, services=("backend",)))  # the v2 of the other modules
    proxies.database.log.clear()
    proxies.database.refuse[MIGRATE_SESSION] = 1
    started = time.monotonic()
    try:
        state = release(cms.name, V2, source, return_state=True)
    finally:
        proxies.clear()
    took = time.monotonic() - started
    now, lost = serving(cms), rows - pages(cms)
    sessions = [refused for name, refused in proxies.database.log if name == MIGRATE_SESSION]
    applied = app_query(
        f"SELECT count(*) FROM payload_migrations WHERE name = '{SUMMARY}'", cms.database
    )
    MATRIX.append(
        Row(
            fault="real stack: database closes the migrations' first connection",
            step="migrate (Payload, through scripts/migrate.mjs)",
            end_state=f"{'released' if state.is_completed() else 'failed'}; services "
            f"{'new' if now[0] == V2 else now}, migration applied: {applied}",
            rows_lost=lost,
            recovered_s=took,
            note=f"{lock_note(cms.name)}; {len(sessions)} "
            f"migration sessions, {sum(sessions)} closed; "
            + ("released" if state.is_completed() else str(state.message)[:150]),
        )
    )
    assert sessions[:1] == [True], "the fault never met the migrations' connection"
    assert state.is_completed(), state.message
    assert now == (V2, before[1], V2), now
    assert applied == "1"
    assert lost == 0
    assert lock_slots(cms.name) == 0


def test_redis_stopped_while_a_real_frontend_deploys(cms):
    """The frontend's shared cache (the suite's Redis) stopped as the new frontend starts, under
    load that passes the CDN (a cookie: every request reaches a frontend, which asks Redis): the
    new frontend starts and passes its checks without Redis, the old one keeps serving from its
    memory, no request fails, and once the stack starts Redis again the frontend uses it."""
    before, rows = serving(cms), pages(cms)
    version = V1  # the frontend's v1 code: its image is in the engine's cache, so no build waits
    outcome: dict = {}

    def run() -> None:
        source = frontend_change(cms, version)
        outcome["state"] = release(cms.name, version, source, return_state=True)

    releasing = threading.Thread(target=run)
    url = site(cms).url("frontend") + "/"
    with Wrk(url, connections=10, delay_ms=20, headers={"Cookie": "visitor=1"}) as load:
        releasing.start()
        try:
            stack.wait_for_container(cms.name, "frontend", version, timeout=600)
            stack.stop("redis")
            stopped = time.monotonic()
        finally:
            releasing.join(timeout=900)
    state = outcome["state"]
    try:
        now, lost = serving(cms), rows - pages(cms)
    finally:
        stack.start_again()
    took = time.monotonic() - stopped
    add_row("Redis (the shared cache) stopped", "deploy frontend (under wrk, past the CDN)", cms,
            before, now, version, lost, took,
            f"wrk: {load.result.requests} requests, {load.result.failed} failed; recovery = "
            "until `scripts/stack.sh up` restarted it")  # fmt: skip
    assert state.is_completed(), state.message
    assert now == (before[0], version, before[0]), now
    assert load.result.requests >= 100, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert lost == 0
