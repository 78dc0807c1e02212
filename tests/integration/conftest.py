"""The real-service tier: the local stack's Docker engine, registry, PostgreSQL, HAProxy and
Prefect server (`scripts/stack.sh up`; `scripts/test.sh` starts it). Nothing here is faked.

Each test module gets its own environment `it-<random>`: its own database, ports, image
repositories and HAProxy frontends. Everything it makes carries its name and is removed afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.variables import Variable

from domain.records import ReleaseRecord
from tasks.records import variable_name
from testbed.reports import step_rows
from testbed.scratch import create_environment, remove_environment

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def stack() -> None:
    """The stack must be up: fail (not skip) with the command that starts it."""
    api = os.environ.get("PREFECT_API_URL")
    problems = []
    if not api:
        problems.append("PREFECT_API_URL is not set")
    else:
        try:
            httpx.get(f"{api}/health", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            problems.append(f"Prefect server {api}: {exc}")
    try:
        docker.DockerClient(base_url=os.environ.get("DOCKER_HOST")).ping()
    except Exception as exc:
        problems.append(f"Docker engine: {exc}")
    if problems:
        pytest.fail(
            "the local stack is not running (" + "; ".join(problems) + "): run `scripts/test.sh`, "
            'or `scripts/stack.sh up` and `eval "$(scripts/stack.sh env)"` first'
        )


@dataclass
class TestEnvironment:
    __test__ = False  # not a test class: pytest must not collect it
    name: str
    source: Path
    description: dict[str, Any]
    runs: list[Any] = field(default_factory=list)

    def url(self, service: str) -> str:
        return next(s["public_url"] for s in self.description["services"] if s["name"] == service)

    def record(self) -> ReleaseRecord:
        return ReleaseRecord.model_validate(Variable.get(variable_name(self.name)))

    def health(self, service: str) -> dict[str, Any]:
        return httpx.get(self.url(service) + "/api/health", timeout=5).json()

    def containers(self, **labels: str) -> list[Any]:
        filters = [f"flowmasters.environment={self.name}"] + [
            f"flowmasters.{k}={v}" for k, v in labels.items()
        ]
        client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
        try:
            return client.containers.list(all=True, filters={"label": filters})
        finally:
            client.close()


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestEnvironment]:
    """A fresh environment with its own database and a copy of the sample app to edit."""
    scratch = create_environment("it", tmp_path_factory.mktemp("envs"))
    try:
        yield TestEnvironment(scratch.name, scratch.source, scratch.description)
    finally:
        remove_environment(scratch.name, scratch.database)


def task_states(flow_run_id: Any) -> dict[str, str]:
    """{task run name: state name} of one flow run, e.g. {'build-backend': 'Cached'}."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name: run.state.name for run in runs if run.state}


def read_events(prefix: str, resource_id: str, expect: str, timeout: float = 20) -> list[dict]:
    """Events of one resource from the server, polling until `expect` arrives (bounded)."""
    api = os.environ["PREFECT_API_URL"]
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(
            f"{api}/events/filter",
            json={
                "filter": {
                    "event": {"prefix": [prefix]},
                    "resource": {"id": [resource_id]},
                },
                "limit": 50,
            },
            timeout=10,
        )
        response.raise_for_status()
        found = response.json()["events"]
        if any(e["event"] == expect for e in found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def run_texts(flow_run_ids: list[Any]) -> list[str]:
    """Every log message and artifact body the server holds for these flow runs."""
    from prefect.client.schemas.filters import (
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    texts: list[str] = []
    with get_client(sync_client=True) as client:
        for offset in range(0, 20_000, 200):
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)),
                limit=200,
                offset=offset,
            )
            texts += [log.message for log in logs]
            if len(logs) < 200:
                break
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids))
        )
        texts += [str(a.data) + str(a.description) for a in artifacts]
    return texts


def edge_row(environment: str, kind: str = "release") -> str:
    """The edge step's row of the environment's latest release (or rollback) report."""
    return next(row["result"] for row in step_rows(environment, kind) if row["step"] == "edge")
