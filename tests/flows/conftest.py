"""Flow tests: the real release flow on a throwaway Prefect server, over an in-memory target.

The environment is a real `Flowmasters Environment` block in that server, read by the product's
own `load_environment`. FAKE: its runtime. `FakeTarget` is plugged in where the registry connects
a target block to its runtime, and stands in for Docker/AWS, so these tests check the flow's
composition (order, records, events, failure paths) in seconds. What it serves is real HTTP on
127.0.0.1, so the smoke checks run unchanged. The real targets are tested in tests/integration.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect_docker import DockerHost

from blocks.environment_block import FlowmastersEnvironment
from domain.checks import CheckSpec, ProbeSpec
from domain.environment import EnvironmentSpec
from domain.results import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    Finding,
    InfrastructureChange,
    InfrastructureReport,
    MigrationResult,
    PushedImage,
    Revision,
    SchemaStatus,
)
from domain.services import ServiceSpec
from flows import events
from flows.lock import lock_name
from targets import registry
from targets.docker_host.blocks import DockerHostTarget, PostgresConnection
from tests.support.block_reads import count_block_reads
from tests.support.prefect_server import throwaway_server

ENVIRONMENT = "flowtest"


DRAIN_SECONDS = 60


def drain_prefect_workers(timeout: float = DRAIN_SECONDS) -> None:
    """Send the logs and events still queued in this process, waiting at most `timeout` seconds.

    Why here: `prefect_test_harness` (the fallback without a stack) drains the same services on
    exit with no timeout, and once (CI, 2026-12-02) that drain never returned after every test
    of the tier had passed, so the tier sat until pytest-timeout's 900 s. Draining first, bounded, stops the services either
    way, so the harness finds nothing left to wait for; a service that did not finish is named
    in a warning (its stack is dumped to stderr) instead of hanging the suite.
    """
    stuck = []
    for service in (APILogWorker, EventsWorker):
        _, pending = service.drain_all(timeout=timeout, at_exit=False)
        if pending:
            stuck.append(service.__name__)
    if stuck:
        faulthandler.dump_traceback(file=sys.stderr)
        warnings.warn(f"{', '.join(stuck)} did not drain within {timeout:.0f}s", stacklevel=2)


@pytest.fixture(scope="package", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A throwaway server, and a throwaway result store: no cache record outlives the session."""
    storage = tmp_path_factory.mktemp("results")
    with (
        throwaway_server(startup_timeout=60),
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield
        drain_prefect_workers()


class Served:
    """A tiny HTTP server answering /api/health with the version a fake deploy made live."""

    def __init__(self) -> None:
        self.reset()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service = self.path.strip("/").split("/")[0]
                body = json.dumps({"version": served.versions.get(service)}).encode()
                served.requests += 1
                broken = served.fail_after is not None and served.requests > served.fail_after
                self.send_response(500 if broken else served.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.timeline: list[str] = []
        self.versions: dict[str, str] = {}
        self.status = 200
        self.requests = 0
        self.fail_after: int | None = None  # answer 500 once this many requests were served


class FakeTarget:
    """FAKE target: records every call; `fail` maps a method name ("deploy"), or one call
    ("deploy:frontend:v1"), to the error it raises."""

    name = "fake"

    def __init__(self, spec: EnvironmentSpec, served: Served) -> None:
        self.spec = spec
        self.served = served
        self.calls: list[str] = []
        self.timeline: list[str] = self.served.timeline  # calls and emitted events, in order
        self.fail: dict[str, Exception] = {}
        # raised once by that deploy call after it switched (a retry then finds it live)
        self.fail_after_switch: dict[str, Exception] = {}
        self.live: dict[str, Revision] = {}
        self.schema = 1
        self.on_backup: Any = None
        self.on_build: Any = None
        self.proposal: InfrastructureChange | None = None  # what plan_infrastructure proposes
        self.kept_running: dict[str, bool] = {}  # service -> its previous revision still runs
        self.applied: tuple[int, ...] = (1,)  # what the migration status reports
        self.reported_pending: tuple[int, ...] = (2,)

    def _call(self, what: str) -> None:
        self.calls.append(what)
        self.timeline.append(what)
        for key in (what, what.split(":")[0]):  # "deploy:frontend:v1", or every "deploy"
            if key in self.fail:
                raise self.fail[key]

    def verify(self) -> InfrastructureReport:
        self._call("verify")
        return InfrastructureReport(
            target="fake", findings=(Finding(component="all", ok=True, detail="ok"),)
        )

    def plan_infrastructure(self) -> InfrastructureChange:
        self._call("plan_infrastructure")
        return self.proposal or InfrastructureChange(target="fake")

    def provision(self, change: InfrastructureChange) -> InfrastructureReport:
        self._call(f"provision:{change.change_id}")
        changed = () if change.empty else (f"applied {change.change_id}",)
        return InfrastructureReport(target="fake", findings=(), changed=changed)

    def discard_infrastructure_change(self, change: InfrastructureChange) -> None:
        self._call(f"discard:{change.change_id}")

    def build_image(self, build: BuildSpec) -> BuiltImage:
        self._call(f"build:{build.service}")
        if self.on_build:
            self.on_build()
        return BuiltImage(
            service=build.service,
            image_id=f"sha256:{build.service}{build.version}",
            local_ref="x",
            version=build.version,
        )

    def push_image(self, image: BuiltImage) -> PushedImage:
        self._call(f"push:{image.service}")
        return PushedImage(
            service=image.service,
            repository=f"reg/{image.service}",
            tag=image.version,
            digest=f"sha256:d{image.version}",
            image_id=image.image_id,
            pushed=True,
        )

    def image_exists(self, service: str, tag: str) -> bool:
        return any(r.version == tag for r in self.live.values())

    def image_reference(self, service: str, tag: str) -> str:
        return f"reg/{service}:{tag}"

    def restore_database(self, backup: Backup) -> None:
        self._call("restore")

    def live_revision(self, service: str) -> Revision | None:
        return self.live.get(service)

    def schema_status(self, image: str) -> SchemaStatus:
        self._call("schema")
        return SchemaStatus(
            applied=self.applied,
            available=(1, 2),
            pending=self.reported_pending,
            schema_version=self.schema,
        )

    def backup_database(self, backup_id: str) -> Backup:
        self._call("backup")
        if self.on_backup:
            self.on_backup()
        return Backup(
            backup_id=backup_id, location=f"/backups/{backup_id}.dump", size_bytes=10, detail="fake"
        )

    def migrate(
        self, image: str, direction: str, steps: int = 1, expected: tuple = ()
    ) -> MigrationResult:
        self._call(f"migrate:{direction}:{steps}" if direction == "down" else "migrate:up")
        if direction == "down":
            self.schema -= steps
            return MigrationResult(
                direction="down", reverted=(2,), schema_version=self.schema, changed=True
            )
        self.schema = 2
        return MigrationResult(direction="up", applied=(2,), schema_version=2, changed=True)

    def deploy_service(
        self, service: str, image: str, version: str, keep_previous: bool = False
    ) -> DeployResult:
        self._call(f"deploy:{service}:{version}")
        previous = self.live.get(service)
        current = Revision(
            service=service,
            version=version,
            image=image,
            image_id=f"id-{image}",
            revision_id=f"{service}-{version}",
        )
        if previous is not None and previous.image_id == current.image_id:
            return DeployResult.unchanged(previous, "already live")
        self.live[service] = current
        self.served.versions[service] = version
        self.kept_running = {**self.kept_running, service: keep_previous}
        if (error := self.fail_after_switch.pop(f"deploy:{service}:{version}", None)) is not None:
            raise error
        return DeployResult(service=service, changed=True, previous=previous, current=current)

    def retire_previous(self, service: str) -> str:
        self._call(f"retire:{service}")
        self.kept_running = {**self.kept_running, service: False}
        return "stopped"

    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult:
        self._call("edge")
        return EdgeResult(load_balancer="fake", cdn="none", changed=True)


def spec_served_by(served: Served) -> EnvironmentSpec:
    url = f"http://127.0.0.1:{served.port}"
    return EnvironmentSpec(
        name=ENVIRONMENT,
        services=(
            ServiceSpec(
                name="frontend",
                context="frontend",
                repository="fm/frontend",
                order=2,
                public_url=f"{url}/frontend",
            ),
            ServiceSpec(
                name="backend",
                context="backend",
                repository="fm/backend",
                order=1,
                public_url=f"{url}/backend",
                owns_migrations=True,
            ),
        ),
        checks=CheckSpec(
            window_seconds=0.3,
            interval_seconds=0.1,
            probes=(
                ProbeSpec(service="backend", path="/"),
                ProbeSpec(service="frontend", path="/"),
            ),
        ),
    )


def save_environment(served: Served, **target: Any) -> None:
    """The environment block naming `served`'s URLs, saved in the test server. Its target block
    is a Docker host nobody connects to (`target` changes its fields): the runtime is the FAKE."""
    spec = spec_served_by(served)
    # Each nested block is saved on its own, as `deployments.register` saves them: the document
    # then names them by reference, and a run imports only its own target's modules.
    database = PostgresConnection(database="none", username="none", password="unused")
    database.save(f"{ENVIRONMENT}-database", overwrite=True)
    docker_host = DockerHost(base_url="unix:///nonexistent/docker.sock")
    docker_host.save(f"{ENVIRONMENT}-docker", overwrite=True)
    unused = DockerHostTarget(
        docker_host=docker_host,
        database=database,
        proxy_admin_socket="/nonexistent/admin.sock",
        proxy_config_dir="/nonexistent/conf.d",
        proxy_pidfile="/nonexistent/haproxy.pid",
        backup_dir="/nonexistent/backups",
        port_base=20000,
        **target,
    )
    unused.save(f"{ENVIRONMENT}-docker-host", overwrite=True)
    FlowmastersEnvironment(target=unused, services=list(spec.services), checks=spec.checks).save(
        ENVIRONMENT, overwrite=True
    )


@pytest.fixture(scope="package")
def served(prefect_server: None) -> Iterator[Served]:
    """The public URLs, and the environment block that names them."""
    served = Served()
    save_environment(served)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(lock_name(ENVIRONMENT), limit=1)
    yield served
    served.server.shutdown()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, served: Served) -> FakeTarget:
    """The FAKE runtime every task of a `flowtest` run connects to (fresh for each test)."""
    served.reset()
    target = FakeTarget(spec_served_by(served), served)
    monkeypatch.setattr(registry, "connect", lambda block, spec: target)
    return target


@pytest.fixture
def block_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    return count_block_reads(monkeypatch)


@pytest.fixture
def emitted(
    monkeypatch: pytest.MonkeyPatch, served: Served
) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """FAKE event sink: the events the flow emitted, in order (the integration tier reads real
    ones); each also goes on the fake target's timeline, after the calls made before it."""
    seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
        seen.append((event, resource, payload))
        served.timeline.append(event)

    monkeypatch.setattr(events, "emit_event", emit)
    return seen


@pytest.fixture
def source(tmp_path: Any) -> str:
    for service in ("frontend", "backend"):
        (tmp_path / service).mkdir()
        (tmp_path / service / "Dockerfile").write_text(f"FROM scratch\n# {service}\n")
    return str(tmp_path)


def code(source: str, version: str, services: tuple[str, ...] = ("frontend", "backend")) -> str:
    """`source` holding `version`'s code in these services, as a checkout of that version would:
    a release keeps a service whose source did not change, so a new version needs new code."""
    for service in services:
        (Path(source) / service / "CHANGES").write_text(f"{version}\n")
    return source
