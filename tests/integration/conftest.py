"""The real-service tier: the local stack's Docker engine, registry, PostgreSQL, HAProxy and
Prefect server (`scripts/stack.sh up`; `scripts/test.sh` starts it). Nothing here is faked.

Each test module gets its own environment `it-<random>`: its own database, ports, image
repositories and HAProxy frontends. Everything it makes carries its name and is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.variables import Variable

from deployments.register import expand, load_description, register_environment
from targets.docker_host import proxy
from tasks.records import ReleaseRecord, variable_name

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def stack_dir() -> Path:
    return Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters"))


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


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports."""
    for _ in range(200):
        base = 20000 + (uuid.uuid4().int % 20000)
        try:
            socks = []
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def admin_psql(sql: str) -> None:
    """Run SQL as the app role (it may create databases): what a test environment needs."""
    db = load_description("local")["target"]["database"]
    env = {
        **os.environ,
        "PGHOST": db["host"],
        "PGPORT": str(db["port"]),
        "PGUSER": db["username"],
        "PGDATABASE": db["database"],
        "PGPASSWORD": Path(db["password_file"]).read_text().strip(),
    }
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True)


@dataclass
class TestEnvironment:
    __test__ = False  # not a test class: pytest must not collect it
    name: str
    source: Path
    description: dict[str, Any]

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


def make_description(name: str, database: str, **overrides: Any) -> dict[str, Any]:
    description = load_description("local")
    base = free_port_block(6)
    description["target"]["port_base"] = base + 2
    description["target"]["database"]["database"] = database
    backend_url, frontend_url = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"
    for service in description["services"]:
        service["repository"] = f"{name}/{service['name']}"
        service["public_url"] = backend_url if service["name"] == "backend" else frontend_url
        if service["name"] == "frontend":
            service["env"] = {"BACKEND_URL": backend_url}
    for key, value in overrides.items():
        description["target"][key] = expand(value)
    return description


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestEnvironment]:
    """A fresh environment with its own database and a copy of the sample app to edit."""
    name = f"it-{uuid.uuid4().hex[:6]}"
    database = f"fm_{name.replace('-', '_')}"
    admin_psql(f"CREATE DATABASE {database}")
    source = tmp_path_factory.mktemp(name) / "flowmasters"
    shutil.copytree(REPO / "examples" / "flowmasters", source)
    description = make_description(name, database)
    register_environment(name, description)
    try:
        yield TestEnvironment(name=name, source=source, description=description)
    finally:
        remove_environment(name, database)


def remove_environment(name: str, database: str | None) -> None:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        for container in client.containers.list(
            all=True, filters={"label": f"flowmasters.environment={name}"}
        ):
            container.remove(force=True)
        for image in client.images.list():
            for tag in image.tags:
                if f"/{name}/" in tag:  # untag only: other environments may share the layers
                    client.images.remove(tag)
    finally:
        client.close()
    conf = stack_dir() / "haproxy" / "conf.d" / f"{name}.cfg"
    if conf.exists():
        conf.unlink()
        proxy.reload(str(conf.parent), str(stack_dir() / "pids" / "haproxy.pid"))
    if database:
        admin_psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    shutil.rmtree(stack_dir() / "backups" / name, ignore_errors=True)
    with get_client(sync_client=True) as client:
        for doc_name, block_type in [
            (name, "flowmasters-environment"),
            (f"{name}-docker-host", "flowmasters-docker-host-target"),
            (f"{name}-docker", "docker-host"),
            (f"{name}-database", "flowmasters-postgres-connection"),
        ]:
            try:
                doc = client.read_block_document_by_name(doc_name, block_type)
                client.delete_block_document(doc.id)
            except Exception:
                pass
    Variable.unset(variable_name(name))


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
