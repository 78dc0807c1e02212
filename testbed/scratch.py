"""Scratch environments: throwaway copies of `local` for the integration and e2e tests and the
benchmarks (test scaffolding, not part of the product).

A scratch environment gets its own database, loopback ports, image repositories, HAProxy
frontends and blocks, all named after it, and `remove_environment` deletes every one of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from deployments import fingerprints
from deployments.register import expand, load_description, register_environment
from flows.lock import lock_name
from targets.docker_host import proxy
from tasks.records import variable_name

REPO = Path(__file__).resolve().parents[1]


def stack_dir() -> Path:
    return Path(os.environ.get("FM_STACK_DIR", "/var/lib/flowmasters"))


def port_range() -> tuple[int, int]:
    """The loopback ports this process may take: from 20000 to the kernel's ephemeral range
    (an outgoing connection may hold any port in that range at random), split evenly between
    the workers of a test run (pytest-xdist's gw0, gw1, ...), so that two workers never pick
    the same block before either has bound it."""
    low, high = 20000, proxy.ephemeral_range()[0]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    share = (high - low) // workers
    return low + worker * share, low + (worker + 1) * share


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports, in this process's range."""
    low, high = port_range()
    for _ in range(200):
        base = low + (uuid.uuid4().int % (high - low - size))
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


def app_role(database: str | None = None) -> dict[str, str]:
    """The environment of a psql as the app role (it may create databases), in `sandbox`'s
    database unless another is named."""
    db = load_description("sandbox")["target"]["database"]
    return {
        **os.environ,
        "PGHOST": db["host"],
        "PGPORT": str(db["port"]),
        "PGUSER": db["username"],
        "PGDATABASE": database or db["database"],
        "PGPASSWORD": Path(db["password_file"]).read_text().strip(),
    }


def app_psql(sql: str, database: str | None = None) -> None:
    """Run SQL as the app role: what a test environment needs."""
    run = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]
    subprocess.run(run, env=app_role(database), check=True)


def app_query(sql: str, database: str | None = None) -> str:
    """One query's result as the app role, unaligned, without headers."""
    run = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
    done = subprocess.run(run, env=app_role(database), capture_output=True, text=True, check=True)
    return done.stdout.strip()


def lock_slots(name: str) -> int:
    """How many holders the environment's lock has now (0: free; no lock: 0)."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(lock_name(name)).active_slots
        except ObjectNotFound:
            return 0


def lock_note(name: str) -> str:
    """The lock's state for a matrix row."""
    return f"lock {'free' if lock_slots(name) == 0 else 'HELD'}"


def served_versions(env: Scratch) -> dict[str, Any]:
    """What a scratch environment serves through its public URL: the frontend's version, and
    the backend's version and schema as the frontend reaches them."""
    url = next(s["public_url"] for s in env.description["services"] if s["name"] == "frontend")
    body = httpx.get(url + "/api/backend", timeout=5).json()
    backend = body.get("backend") or {}
    return {
        "frontend": body.get("frontend_version"),
        "backend": backend.get("version"),
        "schema": backend.get("schema_version"),
    }


def make_description(
    name: str, database: str, base_on: str = "sandbox", **overrides: Any
) -> dict[str, Any]:
    """`base_on`'s description (sandbox: the stand-ins; local: the real stack) with this
    environment's own database, ports and image repositories."""
    description = load_description(base_on)
    description["target"]["database"]["database"] = database
    for service in description["services"]:
        service["repository"] = f"{name}/{service['name']}"
    move_ports(description)
    for key, value in overrides.items():
        description["target"][key] = expand(value)
    return description


def move_ports(description: dict[str, Any]) -> None:
    """Give the description free ports of its own: public URLs and slots."""
    base = free_port_block(6)
    description["target"]["port_base"] = base + 2
    backend_url, frontend_url = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"
    for service in description["services"]:
        service["public_url"] = backend_url if service["name"] == "backend" else frontend_url
        if service["name"] == "frontend":
            service["env"] = {**service.get("env", {}), "BACKEND_URL": backend_url}
        if "FRONTEND_REVALIDATE_URL" in service.get("env", {}):
            service["env"]["FRONTEND_REVALIDATE_URL"] = f"{frontend_url}/revalidate"


def new_code(source: Path, version: str, services: tuple[str, ...] | None = None) -> Path:
    """`source` with `version`'s code in these services' build contexts (every folder with a
    Dockerfile by default), as a checkout of that version would have: a release keeps a service
    whose source did not change since the image it serves, so a new version needs new code. The
    same version always writes the same content."""
    for context in sorted(p.parent for p in Path(source).glob("*/Dockerfile")):
        if services is None or context.name in services:
            (context / "RELEASE").write_text(f"{version}\n")
    return Path(source)


@dataclass
class Scratch:
    name: str
    database: str
    source: Path
    description: dict[str, Any]


def with_migration(env: Scratch, version: str) -> Path:
    """The code of `version` with a migration of its own (so the backup and migrate steps run)."""
    folder = env.source / "backend" / "migrations"
    number = 100 + len(list(folder.glob("01*_step_*.up.sql")))
    table = f"step_{version.replace('-', '_')}"
    (folder / f"{number:04d}_step_{table}.up.sql").write_text(f"CREATE TABLE {table} (x int);\n")
    (folder / f"{number:04d}_step_{table}.down.sql").write_text(f"DROP TABLE {table};\n")
    return new_code(env.source, version)


def create_environment(
    prefix: str,
    workdir: Path,
    app: str = "flowmasters",
    base_on: str = "sandbox",
    edit: Callable[[str, dict[str, Any]], None] | None = None,
) -> Scratch:
    """A fresh environment `<prefix>-<random>` with its own database and a copy of the sample
    app `examples/<app>` (the stand-ins; flowmasters-payload with base_on="local": the real one).
    `edit(name, description)` may change the description before it is registered."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    database = f"fm_{name.replace('-', '_')}"
    app_psql(f"CREATE DATABASE {database}")
    source = workdir / name / app
    shutil.copytree(
        REPO / "examples" / app,
        source,
        ignore=shutil.ignore_patterns("node_modules", ".next", "media"),
    )
    description = make_description(name, database, base_on)
    if edit:
        edit(name, description)
    register_environment(name, description)
    return Scratch(name=name, database=database, source=source, description=description)


def deploy_like(name: str, template: str = "sandbox") -> None:
    """`release/<name>`: a copy of prefect.yaml's `release/<template>` deployment (its work
    pool, the launcher command, the pull step, one release at a time) for a scratch environment,
    so `python -m flows.cli` releases it through the worker as it does a described one."""
    with get_client(sync_client=True) as client:
        model = client.read_deployment_by_name(f"release/{template}")
        client.create_deployment(
            flow_id=model.flow_id,
            name=name,
            entrypoint=model.entrypoint,
            path=model.path,
            work_pool_name=model.work_pool_name,
            work_queue_name=model.work_queue_name,
            job_variables=model.job_variables,
            pull_steps=model.pull_steps,
            parameters={**model.parameters, "environment": name},
            parameter_openapi_schema=model.parameter_openapi_schema,
            concurrency_limit=1,
            concurrency_options=model.concurrency_options,
            tags=["flowmasters", name],
        )


def remove_deployments(name: str) -> None:
    with get_client(sync_client=True) as client:
        for flow in ("release", "rollback"):
            with contextlib.suppress(ObjectNotFound):
                client.delete_deployment(client.read_deployment_by_name(f"{flow}/{name}").id)


def image_tags(client: docker.DockerClient, name: str) -> list[str]:
    """The engine's tags of environment `name` (`…/<name>/<service>:<version>`).

    Read from one listing call: `client.images.list()` inspects every image after listing
    them, and fails with ImageNotFound when a test running beside this one removes an image
    in between (seen in CI)."""
    return [t for i in client.api.images() for t in i.get("RepoTags") or [] if f"/{name}/" in t]


def untag_images(client: docker.DockerClient, name: str) -> None:
    """Untag only: other environments may share the layers. A tag gone already is fine."""
    for tag in image_tags(client, name):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag)


def remove_environment(name: str, database: str | None) -> None:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        for container in client.containers.list(
            all=True, filters={"label": f"flowmasters.environment={name}"}
        ):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"flowmasters.environment={name}"}):
            volume.remove(force=True)
        untag_images(client, name)
    finally:
        client.close()
    conf = stack_dir() / "haproxy" / "conf.d" / f"{name}.cfg"
    if conf.exists():
        with proxy.config_lock(str(conf.parent)):  # as the target's own reloads do
            conf.unlink()
            proxy.reload(str(conf.parent), str(stack_dir() / "pids" / "haproxy.pid"))
            proxy.HaproxyAdmin(str(stack_dir() / "haproxy" / "admin.sock")).wait_for(
                f"the backends of '{name}' are gone",
                lambda states: not any(b.startswith(f"be_{name}_") for b, _ in states),
                timeout=30,
            )
    (conf.parent / f"{name}.map").unlink(missing_ok=True)  # its live map (read at a reload)
    if database:
        app_psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    shutil.rmtree(stack_dir() / "backups" / name, ignore_errors=True)
    remove_blocks(name)
    remove_deployments(name)
    Variable.unset(variable_name(name))
    Variable.unset(fingerprints.variable_name(f"environment-{name}"))


def remove_blocks(name: str) -> None:
    """The environment's block documents (`name`, and those its target saved as `name-*`) and
    its lock."""
    with get_client(sync_client=True) as client:
        found, offset = [], 0
        while page := client.read_block_documents(offset=offset, limit=200, include_secrets=False):
            found += page
            offset += len(page)
        for doc in found:
            if doc.name == name or (doc.name or "").startswith(f"{name}-"):
                with contextlib.suppress(ObjectNotFound):
                    client.delete_block_document(doc.id)
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(lock_name(name))


def remove_leftovers(prefixes: tuple[str, ...] = ("it-", "e2e-", "bench-")) -> list[str]:
    """Remove scratch environments a killed run left behind (found by container label and by
    HAProxy file); returns their names. Only names with these prefixes are ever touched."""
    names = {p.stem for p in (stack_dir() / "haproxy" / "conf.d").glob("*.cfg")}
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        for container in client.containers.list(
            all=True, filters={"label": "flowmasters.environment"}
        ):
            names.add(container.labels["flowmasters.environment"])
    finally:
        client.close()
    leftovers = sorted(n for n in names if n.startswith(prefixes))
    for name in leftovers:
        remove_environment(name, f"fm_{name.replace('-', '_')}")
    return leftovers


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.scratch remove-leftovers`: before tests start on a stack that earlier
    runs used (scripts/test.sh, for a subset), never while any runs."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["remove-leftovers"]:
        print("usage: python -m testbed.scratch remove-leftovers", file=sys.stderr)
        return 2
    gone = remove_leftovers()
    print(
        f"removed scratch environments a killed run left behind: {gone}" if gone else "no leftovers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
