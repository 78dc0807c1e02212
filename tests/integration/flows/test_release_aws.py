"""The SAME `release` and `rollback` flows, end to end on the AWS target, against moto (issue #4).

The flows run in this process against the local stack's real Prefect server (blocks, record
Variable, lock) and build real images with the local Docker engine. Every AWS call goes to a
ThreadedMotoServer on 127.0.0.1 with dummy credentials (the moto world of
tests/support/moto_world.py). Where moto does not model AWS, the test plays AWS's part, and says so:

- FAKE ECS scheduler (`Scheduler`, from tests/support/moto_world.py's FakeEcsScheduler): moto never starts
  tasks, so a rollout would stay IN_PROGRESS forever; the fake completes it, or plays the
  deployment circuit breaker rolling it back.
- FAKE migration container (`Migrations`, from FakeMigrationContainer there): moto never
  runs a container, so the fake sets the one-off task's exit code and writes the JSON line the
  sample app's migrate.py would print into moto's CloudWatch Logs.
- FAKE docker push (fake_docker_push there): moto's ECR is an API, not a registry; the
  locally built image arrives through ECR put_image with its real image id as config digest.
- FAKE ALB/CloudFront (`PublicEdge`): moto serves no traffic, so a small HTTP server on 127.0.0.1
  stands in for the public URLs. It answers with the version that the ECS service's PRIMARY
  deployment's task definition image tag names (read from moto's state on every request), so the
  smoke checks check what ECS runs.
- A tiny CloudFormation template stands in for infra/cloudformation/flowmasters.yaml (the real
  one needs a VPC, RDS and more than moto should create for a quick test).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
from moto.rds.models import rds_backends
from prefect.client.orchestration import get_client
from prefect.variables import Variable
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from prefect_docker import DockerHost

from blocks.environment_block import FlowmastersEnvironment
from domain.checks import CheckSpec, ProbeSpec
from domain.records import ReleaseRecord
from domain.services import ServiceSpec
from flows.lock import lock_name
from flows.release import release
from flows.rollback import rollback
from targets.aws.blocks import AwsTarget
from targets.aws.runtime import AwsRuntime
from tasks.records import variable_name
from testbed.scratch import new_code, untag_images
from tests.support import moto_world
from tests.support.moto_world import (
    ACCESS_KEY,
    ACCOUNT,
    REGION,
    SECRET_KEY,
    FakeEcsScheduler,
    FakeMigrationContainer,
    ecs_backend,
    fake_docker_push,
)

pytestmark = pytest.mark.integration

# The moto world (cluster fm-test, its two services, RDS fm-test-db, CloudFront, target groups,
# log group), reused as it is.
moto_url = moto_world.moto_url
aws = moto_world.aws
world = moto_world.world

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("backend", "frontend")


# -- fakes where moto does not model AWS ----------------------------------------------------------


def served_version(service: str) -> str:
    """The image tag of the task definition of the service's PRIMARY deployment, read from moto's
    state directly (not describe_services: the FakeEcsScheduler counts those calls)."""
    svc = ecs_backend().services[f"fm-test:fm-test-{service}"]
    primary = next(d for d in svc.deployments if d["status"] == "PRIMARY")
    td = ecs_backend().describe_task_definition(primary["taskDefinition"])
    return td.container_definitions[0]["image"].rsplit(":", 1)[-1]


class PublicEdge(BaseHTTPRequestHandler):
    """FAKE ALB/CloudFront: /backend/... and /frontend/... answer like the sample app would,
    with the version ECS runs now."""

    def do_GET(self) -> None:
        service, _, path = self.path.lstrip("/").partition("/")
        path = "/" + path
        if service == "backend" and path == "/api/health":
            body: Any = {"status": "ok", "version": served_version("backend")}
        elif service == "frontend" and path == "/api/health":
            body = {"status": "ok", "version": served_version("frontend")}
        elif service == "frontend" and path == "/api/backend":
            body = {"backend": {"version": served_version("backend")}}
        elif service == "frontend" and path == "/":
            self._answer(200, b"<html>Flow Masters</html>", "text/html")
            return
        else:
            self._answer(404, b"{}", "application/json")
            return
        self._answer(200, json.dumps(body).encode(), "application/json")

    def _answer(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class Scheduler(FakeEcsScheduler):
    """FakeEcsScheduler that also remembers which ECS services were updated, in order, and can
    roll back only one of them (the others complete)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, roll_back: str | None = None):
        super().__init__(monkeypatch, "completed")
        self.roll_back = roll_back
        self.updated: list[str] = []

    def update_service(self, properties: dict) -> Any:
        name = properties["service"].split("/")[-1].removeprefix("fm-test-")
        self.updated.append(name)
        self.outcome = "rollback" if name == self.roll_back else "completed"
        return super().update_service(properties)


class Migrations(FakeMigrationContainer):
    """FakeMigrationContainer that answers like examples/flowmasters/backend/migrate.py: `status`
    reports one pending migration, `up` applies it (or exits `up_code`). Remembers when each
    task started and which RDS snapshots existed at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, schema: dict[str, int], up_code: int = 0):
        super().__init__(monkeypatch, 0, [])
        self.schema, self.up_code = schema, up_code
        self.started: list[dict[str, Any]] = []

    def run_task(self, *args: Any, **kwargs: Any) -> Any:
        overrides = inspect.signature(self.run).bind(*args, **kwargs).arguments["overrides"]
        action = overrides["containerOverrides"][0]["command"][2]
        version = self.schema["version"]
        snapshots = rds_backends[ACCOUNT][REGION].database_snapshots
        self.started.append(
            {"action": action, "at": datetime.now(UTC), "snapshots": set(snapshots)}
        )
        applied = list(range(1, version + 1))
        if action == "status":
            self.code, self.lines = 0, [json.dumps({
                "applied": applied,
                "available": [*applied, version + 1],
                "pending": [version + 1],
                "schema_version": version,
            })]  # fmt: skip
        elif self.up_code:
            self.code = self.up_code
            self.lines = [f"applying {version + 1:04d}_broken", "ERROR: syntax error at or near"]
        else:
            self.schema["version"] = version + 1
            self.code, self.lines = 0, [
                f"applying {version + 1:04d}_next",
                json.dumps({"applied": [version + 1], "reverted": [], "schema_version": version + 1}),
            ]  # fmt: skip
        return super().run_task(*args, **kwargs)


# -- the environment: moto resources, blocks in the real Prefect server --------------------------


TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Resources:
  Logs: {Type: AWS::Logs::LogGroup, Properties: {LogGroupName: /fm/flows-test}}
"""


@pytest.fixture(scope="module")
def env(moto_url, world, aws, tmp_path_factory) -> Iterator[dict[str, Any]]:
    name = f"it-aws-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("aws-flows")
    source = tmp / "flowmasters"
    shutil.copytree(REPO / "examples" / "flowmasters", source)
    template = tmp / "stack.yaml"
    template.write_text(TEMPLATE)
    repositories = {s: f"{name}/{s}" for s in SERVICES}
    for repository in repositories.values():
        aws("ecr").create_repository(repositoryName=repository)

    http = ThreadingHTTPServer(("127.0.0.1", 0), PublicEdge)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    edge = f"http://127.0.0.1:{http.server_address[1]}"

    credentials = AwsCredentials(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_url),
    )
    docker_host = DockerHost(base_url=os.environ["DOCKER_HOST"], timeout=300)
    docs = [
        (f"{name}-aws", "aws-credentials"),
        (f"{name}-docker", "docker-host"),
        (f"{name}-aws-target", "flowmasters-aws-target"),
        (name, "flowmasters-environment"),
    ]
    try:
        credentials.save(f"{name}-aws", overwrite=True)
        docker_host.save(f"{name}-docker", overwrite=True)
        target = AwsTarget(
            aws_credentials=credentials,
            stack_name=name,
            template_path=str(template),
            cluster="fm-test",
            services={s: f"fm-test-{s}" for s in SERVICES},
            repositories=repositories,
            db_instance_identifier="fm-test-db",
            distribution_id=world["distribution"],
            target_groups={s: world["tg"][s] for s in SERVICES},
            subnets=[world["subnet"]],
            security_groups=[world["sg"]],
            deploy_timeout_seconds=10,
            infrastructure_timeout_seconds=10,
            poll_seconds=0.05,
            docker_host=docker_host,
        )
        target.save(f"{name}-aws-target", overwrite=True)
        environment = FlowmastersEnvironment(
            target=target,
            services=[
                ServiceSpec(
                    name="backend",
                    context="backend",
                    repository=f"{name}/backend",
                    order=1,
                    public_url=f"{edge}/backend",
                    owns_migrations=True,
                    uses_database=True,
                    lb_check_path="/api/pages",
                ),
                ServiceSpec(
                    name="frontend",
                    context="frontend",
                    repository=f"{name}/frontend",
                    order=2,
                    public_url=f"{edge}/frontend",
                    lb_check_path="/",
                    env={"BACKEND_URL": f"{edge}/backend"},
                ),
            ],
            checks=CheckSpec(
                window_seconds=1,
                interval_seconds=0.2,
                probes=(
                    ProbeSpec(service="backend", path="/api/health"),
                    ProbeSpec(service="frontend", path="/api/health"),
                    ProbeSpec(
                        service="frontend", path="/api/backend", version_field="backend.version"
                    ),
                    ProbeSpec(service="frontend", path="/", version_field=None),
                ),
            ),
            build_args={"BASE_IMAGE": os.environ.get("FM_BASE_IMAGE", "flowmasters/base:bookworm")},
        )
        environment.save(name, overwrite=True)
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(lock_name(name), limit=1)
        yield {
            "name": name,
            "source": source,
            "repositories": repositories,
            "schema": {"version": 2},
        }
    finally:
        http.shutdown()
        http.server_close()
        with get_client(sync_client=True) as client:
            for doc_name, block_type in docs:
                try:
                    doc = client.read_block_document_by_name(doc_name, block_type)
                    client.delete_block_document(doc.id)
                except Exception:
                    pass
            with contextlib.suppress(Exception):
                client.delete_global_concurrency_limit_by_name(lock_name(name))
        Variable.unset(variable_name(name))
        engine = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
        try:
            untag_images(engine, name)  # the moto ECR repository URIs of this environment
        finally:
            engine.close()


@pytest.fixture(autouse=True)
def fake_push(monkeypatch, aws) -> None:
    monkeypatch.setattr(AwsRuntime, "_docker_push", fake_docker_push(aws))  # FAKE: see above


def live() -> dict[str, str]:
    """service -> the task definition ARN its ECS service runs (moto's state)."""
    return {s: ecs_backend().services[f"fm-test:fm-test-{s}"].task_definition for s in SERVICES}


def image_tag(client, td_arn: str) -> str:
    td = client("ecs").describe_task_definition(taskDefinition=td_arn)["taskDefinition"]
    return td["containerDefinitions"][0]["image"].rsplit(":", 1)[-1]


def record(env: dict[str, Any]) -> ReleaseRecord:
    return ReleaseRecord.model_validate(Variable.get(variable_name(env["name"])))


def run_release(env: dict[str, Any], version: str) -> Any:
    return release(env["name"], version, str(new_code(env["source"], version)), return_state=True)


# -- the tests share the environment and run in order --------------------------------------------


def test_release_v1_backs_up_before_migrating_and_deploys_both(env, aws, monkeypatch):
    scheduler = Scheduler(monkeypatch)
    migrations = Migrations(monkeypatch, env["schema"])

    state = run_release(env, "v1")

    assert state.is_completed(), state.message
    assert scheduler.updated == ["backend", "frontend"]
    assert {s: image_tag(aws, arn) for s, arn in live().items()} == dict.fromkeys(SERVICES, "v1")
    rec = record(env)
    assert rec.status == "succeeded"
    assert rec.version == "v1"
    assert rec.schema_before == 2 and rec.schema_after == 3
    assert {s: r.version for s, r in rec.previous.items()} == dict.fromkeys(SERVICES, "1.0.0")
    assert rec.backup.backup_id == rec.release_id
    snapshot_id = rec.backup.location.rsplit(":", 1)[-1]  # arn:aws:rds:...:snapshot:<id>
    found = aws("rds").describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
    assert found[0]["Status"] == "available"
    assert rec.backup.location == found[0]["DBSnapshotArn"]
    # The snapshot existed when the `up` migration task started, and was made before it.
    # (`status` runs twice before: for the plan and for the record's schema_before.)
    assert [m["action"] for m in migrations.started] == ["status", "status", "up"]
    *status, up = migrations.started
    assert all(snapshot_id not in s["snapshots"] for s in status)
    assert snapshot_id in up["snapshots"]
    assert found[0]["SnapshotCreateTime"] <= up["at"]


def test_a_migration_that_exits_1_stops_the_release_before_any_service_changes(
    env, aws, monkeypatch
):
    before = live()
    scheduler = Scheduler(monkeypatch)
    migrations = Migrations(monkeypatch, env["schema"], up_code=1)

    state = run_release(env, "v2")

    assert state.is_failed()
    assert "exited 1; nothing after this step ran" in state.message
    assert [m["action"] for m in migrations.started] == ["status", "status", "up"]
    assert scheduler.updated == []
    assert live() == before  # the migration's new revision is registered but runs nowhere
    assert {s: image_tag(aws, arn) for s, arn in live().items()} == dict.fromkeys(SERVICES, "v1")
    rec = record(env)
    assert (rec.version, rec.status) == ("v2", "failed")
    assert rec.backup is not None  # the backup is taken before the migration, even a failing one
    assert env["schema"]["version"] == 3


def test_a_deploy_that_ecs_rolled_back_fails_the_release(env, aws, monkeypatch):
    before = live()
    scheduler = Scheduler(monkeypatch, roll_back="backend")
    Migrations(monkeypatch, env["schema"])

    state = run_release(env, "v3")

    assert state.is_failed()
    assert "deploy of backend v3 to ECS service fm-test-backend failed" in state.message
    assert "ECS rolled the deployment back" in state.message
    assert scheduler.updated == ["backend"]  # the frontend was not deployed
    assert live() == before
    assert {s: image_tag(aws, arn) for s, arn in live().items()} == dict.fromkeys(SERVICES, "v1")
    assert (record(env).version, record(env).status) == ("v3", "failed")


def test_release_v4_then_rollback_returns_to_the_recorded_revisions(env, aws, monkeypatch):
    v1 = live()
    scheduler = Scheduler(monkeypatch)
    Migrations(monkeypatch, env["schema"])

    state = run_release(env, "v4")

    assert state.is_completed(), state.message
    assert {s: image_tag(aws, arn) for s, arn in live().items()} == dict.fromkeys(SERVICES, "v4")
    rec = record(env)
    assert rec.status == "succeeded"
    assert {s: r.revision_id for s, r in rec.previous.items()} == v1

    scheduler.updated.clear()
    state = rollback(env["name"], return_state=True)

    assert state.is_completed(), state.message
    assert scheduler.updated == ["frontend", "backend"]  # frontend first
    assert {s: image_tag(aws, arn) for s, arn in live().items()} == dict.fromkeys(SERVICES, "v1")
    assert live() == v1  # the recorded revisions themselves, not copies of them
    after = record(env)
    assert (after.release_id, after.status) == (rec.release_id, "rolled_back")
