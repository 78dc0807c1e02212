"""End to end: the deployments of prefect.yaml, run by the stack's worker, against `sandbox` (the
Docker host) and `production` (AWS; here the stack's moto server, which stands in for AWS because
no machine here may reach it), with the automations the deployments created. Nothing else is
faked.

`scripts/test.sh` deploys prefect.yaml before pytest runs. These tests change what `sandbox`
serves: each starts by releasing a version of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import State

from deployments.descriptions import load_description
from testbed.scratch import new_code, stack_dir
from tests.integration.conftest import stack  # noqa: F401  (the stack must be up)

# Every test that acts on `sandbox` (here and in tests/faults) is in this group: one worker runs
# them one after the other, since they share one environment (tests/support/schedule.py).
SANDBOX = pytest.mark.xdist_group("sandbox")

SANDBOX_FRONTEND = next(
    s["public_url"] for s in load_description("sandbox")["services"] if s["name"] == "frontend"
)


def new_version(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def served_version(frontend: str) -> str | None:
    """The version the frontend's page shows, or None if it does not answer."""
    try:
        return page_version(httpx.get(frontend + "/", timeout=3).text)
    except httpx.HTTPError:
        return None


def page_version(html: str) -> str | None:
    match = re.search(r'<span id="version">([^<]+)</span>', html)
    return match.group(1) if match else None


def start(deployment: str, **parameters: Any) -> FlowRun:
    return run_deployment(deployment, parameters=parameters, timeout=0)


STAND_INS = Path(__file__).resolve().parents[2] / "examples" / "flowmasters"
CODE = Path(tempfile.gettempdir()) / f"fm-e2e-code-{os.getpid()}"


def code(version: str) -> str:
    """A checkout of the stand-ins at `version`: their code with this version's change in it.
    A release keeps a service whose source did not change since the image it serves, so each
    new version a test releases needs code of its own (passed as the release's `source`)."""
    path = CODE / version
    if not path.exists():
        shutil.copytree(STAND_INS, path)
        new_code(path, version)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def versions_code() -> Iterator[None]:
    yield
    shutil.rmtree(CODE, ignore_errors=True)


def read(flow_run_id: Any) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def log_messages(flow_run_id: Any) -> list[str]:
    """Every log line of a flow run (its tasks' too), as the Prefect UI shows them."""
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
    return [log.message for log in logs]


def runs_logging(flow_run_ids: list[Any], text: str, timeout: float = 30) -> list[Any]:
    """The runs among `flow_run_ids` that logged a line containing `text`, waiting up to `timeout`
    for one: a run ships its logs in batches and at its process's exit, which can come after its
    final state (a rollback that only switches ends within one batch interval)."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [r for r in flow_run_ids if any(text in m for m in log_messages(r))]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.5)


def wait_until(what: str, probe, timeout: float = 600, every: float = 1.0) -> Any:
    """Bounded polling: the probe's first truthy value, or a failure naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s")


def wait_final(flow_run_id: Any, timeout: float = 600) -> FlowRun:
    return wait_until(
        f"flow run {flow_run_id} ending",
        lambda: (run := read(flow_run_id)).state and run.state.is_final() and run,
        timeout=timeout,
    )


def runs_of(flow: str, deployment: str, since: Any) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
        )


def rolled_back_to(previous: str, since: Any) -> list[FlowRun]:
    """Wait until `sandbox` serves `previous` again and every rollback started since `since` (by
    the automations) has ended; returns those rollback runs."""
    wait_until(
        "the automation's rollback serving the previous version",
        lambda: served_version(SANDBOX_FRONTEND) == previous,
        timeout=300,
    )
    return wait_until(
        "every triggered rollback ending",
        lambda: (
            (runs := runs_of("rollback", "sandbox", since))
            and all(r.state.is_final() for r in runs)
            and runs
        ),
        timeout=300,
    )


UNFINISHED = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]


def unfinished_since(since: Any) -> list[FlowRun]:
    """Runs of this tier's environments due since `since` that have not ended (future schedules
    excluded). Other tiers' tests run beside these, on environments of their own: their runs
    are theirs to end."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
            )
        )
    return [r for r in runs if ours(str(r.parameters.get("environment", "")))]


def ours(environment: str) -> bool:
    """An environment of this tier: the described ones it releases, or a scratch one it made."""
    return environment in ("sandbox", "staging", "production") or environment.startswith("e2e-")


@pytest.fixture(autouse=True)
def no_run_outlives_its_test() -> Iterator[None]:
    """What a test started ends with it. The deployments allow one release at a time and cancel
    a newer one (CANCEL_NEW), so a run a failed test left running would fail every later test
    with "Deployment concurrency limit reached" (CI, 2026-12-02) instead of its own message.
    Runs still going a minute after the test (a rollback it triggered) are cancelled through the
    worker, which stops their processes."""
    since = datetime.now(UTC)
    yield
    deadline = time.monotonic() + 60
    while (left := unfinished_since(since)) and time.monotonic() < deadline:
        time.sleep(2)
    if not left:
        return
    with get_client(sync_client=True) as client:
        for run in left:
            client.set_flow_run_state(run.id, State(type=StateType.CANCELLING), force=True)
    wait_until(
        f"the runs left by this test ({', '.join(r.name for r in left)}) ending once cancelled",
        lambda: not unfinished_since(since),
        timeout=120,
        every=2,
    )


def run_pid(run_id: Any) -> int:
    """The run's process: the launcher's child (its log names it), else the worker's one."""
    log = stack_dir() / "logs" / "launcher.log"

    def found() -> int | None:
        match = re.search(rf"flow run {run_id}: started as pid (\d+)", log.read_text())
        if match:
            return int(match.group(1))
        pid = read(run_id).infrastructure_pid
        return int(str(pid).rpartition(":")[2]) if pid else None

    return wait_until("the run's process id", found, timeout=60, every=0.05)


def task_seen(run_id: Any, prefix: str, occurrence: int) -> str | None:
    """The state of the `occurrence`-th task run named `prefix...`, once it exists."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    matching = sorted(
        (r for r in runs if r.name.startswith(prefix)), key=lambda r: r.expected_start_time
    )
    if len(matching) < occurrence:
        return None
    state = matching[occurrence - 1].state
    return state.name if state else "Scheduled"
