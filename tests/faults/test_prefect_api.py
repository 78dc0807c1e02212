"""The Prefect API as a failing dependency: the release's process (`python -m flows.cli --here`)
or the main command reaches the suite's real Prefect server through a fault proxy
(tests/support/faultproxy.py) that answers 503 to a share of requests, answers 500 to the
record's writes, or goes away (open connections closed, new ones refused) in the middle of a
release, as a restarting server does.

Why a proxy and not a restart of the server itself: the server is the whole suite's (its worker,
launcher and automations hold connections to it); what a release sees of a restart (its
connections dropped, new ones refused for a while, then the same server again with the same
database) is what the proxy plays, without ending the suite's other clients.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.variables import Variable

from domain.records import ReleaseRecord
from flows.release import release
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
    served_versions,
)
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 15  # a restart of this machine's Prefect server takes about this long
# The outage starts once the server shows the backend's deploy (its events arrive a moment
# late); the bake keeps the release going past that moment, and the outage outlasts the bake, so
# the release's last steps (the record, its final state) meet the server away.
AWAY_BAKE_SECONDS = 6
COMMAND_TIMEOUT = 600


@pytest.fixture(scope="module")
def api() -> Iterator[FaultProxy]:
    server = os.environ["PREFECT_API_URL"].removesuffix("/api").removeprefix("http://")
    host, _, port = server.partition(":")
    proxy = FaultProxy(host, int(port), seed=11).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    def short_checks(_name: str, description: dict[str, Any]) -> None:
        description["checks"]["window_seconds"] = 2

    scratch = create_environment("it-api", tmp_path_factory.mktemp("api"), edit=short_checks)
    deploy_like(scratch.name)
    first = release(scratch.name, "v0", str(new_code(scratch.source, "v0")), return_state=True)
    assert first.is_completed(), first.message
    yield scratch
    remove_environment(scratch.name, scratch.database)


@pytest.fixture(autouse=True)
def healthy(api: FaultProxy) -> Iterator[None]:
    yield
    api.rules.clear()
    api.share_503 = 0.0
    api.come_back()


def command(
    env: Scratch, version: str, api: FaultProxy, here: bool, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The main command, its Prefect API through the proxy."""
    args = ["--environment", env.name, "--version", version, *extra]
    args += ["--source", str(new_code(env.source, version))] + (["--here"] if here else [])
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": f"http://{api.address}/api"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def release_runs(env: Scratch, since: datetime) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[env.name])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
            ),
        )


def written_row(env: Scratch, why: str) -> str:
    title = f"written before {why} {time.time_ns()}"
    app_query(f"INSERT INTO pages (title, body) VALUES ('{title}', 'x')", env.database)
    return title


def rows_lost(env: Scratch, title: str) -> int:
    return 1 - int(app_query(f"SELECT count(*) FROM pages WHERE title = '{title}'", env.database))


def outcome(env: Scratch, version: str, before: dict[str, Any]) -> tuple[str, ReleaseRecord]:
    """How the environment ended ("new", "old" or "MIXED"), and its release record."""
    now = served_versions(env)
    services = (now["frontend"], now["backend"])
    ends = (
        "new" if services == (version, version)
        else "old" if services == (before["frontend"], before["backend"])
        else f"MIXED {now}"
    )  # fmt: skip
    record = ReleaseRecord.model_validate(Variable.get(variable_name(env.name)))
    return ends, record


def record_says(record: ReleaseRecord, version: str) -> str:
    if record.version != version:
        return "no record written (the last is the previous release's)"
    return f"record {record.status}"


def add_row(fault: str, step: str, version: str, ends: str, record: ReleaseRecord, env: Scratch,
            lost: int, took: float, note: str) -> None:  # fmt: skip
    MATRIX.append(
        Row(
            fault=fault,
            step=step,
            end_state=f"services {ends}; {record_says(record, version)}",
            rows_lost=lost,
            recovered_s=took,
            note=f"{lock_note(env.name)}; {note}",
        )
    )


def test_the_command_follows_a_release_through_a_flaky_api(env, api):
    """The main command starts the run through the worker and follows it; its own requests meet
    the 503s (the run itself talks to the server directly)."""
    before, since = served_versions(env), datetime.now(UTC)
    api.share_503 = 0.2
    started = time.monotonic()
    done = command(env, "cli-flaky", api, here=False)
    took = time.monotonic() - started
    failed = sum(1 for x in api.log if x.faulted)
    ends, record = outcome(env, "cli-flaky", before)
    runs = release_runs(env, since)
    add_row("Prefect API answers 503 to 20% of the command's requests", "the main command",
            "cli-flaky", ends, record, env, 0, took,
            f"{failed} of {len(api.log)} requests failed; {len(runs)} run(s) started")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "release Completed" in done.stdout
    assert failed > 0 and "answered 503" in done.stderr
    assert ends == "new" and record.status == "succeeded"
    assert len(runs) == 1, [r.name for r in runs]  # a retried start names the same run


def test_a_release_through_a_flaky_api(env, api):
    """Every request of the release's process (states, logs, events, blocks, variables, the lock)
    passes the proxy; Prefect's client retries 429/502/503 itself, with backoff and jitter."""
    before = served_versions(env)
    title = written_row(env, "a flaky API")
    api.share_503 = 0.05
    started = time.monotonic()
    done = command(env, "api-flaky", api, here=True)
    took = time.monotonic() - started
    failed = sum(1 for x in api.log if x.faulted)
    ends, record = outcome(env, "api-flaky", before)
    lost = rows_lost(env, title)
    add_row("Prefect API answers 503 to 5% of requests", "every step (states, logs, record)",
            "api-flaky", ends, record, env, lost, took,
            f"{failed} of {len(api.log)} requests failed")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert failed > 0
    assert ends == "new" and record.status == "succeeded" and lost == 0
    assert lock_slots(env.name) == 0


@pytest.mark.parametrize("kind", ["permanent", "transient"])
def test_a_fault_in_the_record_step(env, api, kind):
    """The record is a Prefect variable: its write answered 500 (which Prefect's client does not
    retry; the step's own retries do) for good, or once."""
    before = served_versions(env)
    title = written_row(env, f"a {kind} record fault")
    api.rules.append(
        Rule(r"^(POST|PATCH) /api/variables/", None if kind == "permanent" else 1, status=500)
    )
    version = f"record-{kind}"
    started = time.monotonic()
    done = command(env, version, api, here=True)
    took = time.monotonic() - started
    api.rules.clear()
    ends, record = outcome(env, version, before)
    lost = rows_lost(env, title)
    said = " ".join((done.stdout + done.stderr).split())
    add_row(f"{kind}: Prefect API answers 500 to variable writes", "record", version, ends,
            record, env, lost, took, "released" if done.returncode == 0 else said[-150:])  # fmt: skip
    assert lost == 0 and lock_slots(env.name) == 0
    if kind == "permanent":
        assert done.returncode == 1, said[-2000:]
        assert ends == "old", ends
        assert "the Prefect API answered 500 while writing the release record" in said, said[-2000:]
        assert record.version != version  # never written: the record says what ran last
    else:
        assert done.returncode == 0, said[-2000:]
        assert ends == "new" and record.status == "succeeded"


def test_the_server_going_away_in_the_middle_of_a_release(env, api):
    """From the moment the release creates its backend's deploy step, the server is away for
    OUTAGE_SECONDS: every open connection closed, every new one refused. The release must end
    fully on one version (it waits, or fails and switches back), the lock free."""
    before = served_versions(env)
    title = written_row(env, "the server went away")
    version = f"server-away-{time.time_ns()}"  # the task run it waits for is this run's
    finished = threading.Event()
    at_outage: list[str] = []
    went_away: list[float] = []

    def outage_at_the_backends_deploy() -> None:
        """Task runs reach the server as events on the release's websocket, so the step is read
        from the server directly (not through the proxy) and the outage starts once it runs."""
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline and not finished.is_set():
            with get_client(sync_client=True) as client:
                found = client.read_task_runs(
                    task_run_filter=TaskRunFilter(
                        name=TaskRunFilterName(any_=[f"deploy-backend-{version}"])
                    )
                )
            if found:
                at_outage.append(found[0].state.name if found[0].state else "?")
                went_away.append(time.monotonic())
                api.go_down()
                time.sleep(OUTAGE_SECONDS)
                api.come_back()
                return
            time.sleep(0.2)

    threading.Thread(target=outage_at_the_backends_deploy, daemon=True).start()
    started = time.monotonic()
    done = command(env, version, api, here=True, extra=("--bake-seconds", str(AWAY_BAKE_SECONDS)))
    ended = time.monotonic()
    finished.set()
    took = ended - started
    ends, record = outcome(env, version, before)
    lost = rows_lost(env, title)
    said = " ".join((done.stdout + done.stderr).split())
    add_row(f"Prefect server away for {OUTAGE_SECONDS} s (connections closed, refused)",
            "deploy backend onward", version, ends, record, env, lost, took,
            f"away from the deploy's task {at_outage[:1]}, "
            f"{ended - went_away[0] if went_away else 0:.1f} s before the release ended; "
            + ("released" if done.returncode == 0 else said[-150:]))  # fmt: skip
    assert went_away, "the release never reached its backend's deploy"
    assert went_away[0] < ended - 1, "the outage began only as the release ended: it met nothing"
    assert lost == 0
    assert ends in ("new", "old"), ends
    assert (done.returncode == 0) == (ends == "new"), said[-2000:]
    assert lock_slots(env.name) == 0


def test_a_clean_release_after_the_api_faults(env):
    state = release(
        env.name, "after-api", str(new_code(env.source, "after-api")), return_state=True
    )
    assert state.is_completed(), state.message
    assert served_versions(env)["frontend"] == "after-api"
