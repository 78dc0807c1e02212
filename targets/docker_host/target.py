"""The Docker-host runtime: what the tasks call when an environment's target is a Docker host.

Deploy = start the new version on the idle slot beside the live one, wait until it answers its
health check, switch HAProxy to it, drain and stop the old container, and keep it (stopped) for
rollback. Given an older image, the same function is the rollback.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import docker
import docker.errors

from targets.base import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    EnvironmentSpec,
    Finding,
    InfrastructureChange,
    InfrastructureReport,
    MigrationResult,
    PushedImage,
    Revision,
    SchemaStatus,
)
from targets.docker_host import containers, database, images, proxy
from targets.docker_host.registry import RegistryClient
from targets.errors import ReleaseError, TransientError
from targets.runlog import run_logger

if TYPE_CHECKING:
    from collections.abc import Iterator

    from blocks.targets import DockerHostTarget

START_HINT = "start the local stack with `scripts/stack.sh up`"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    return run_logger("flowmasters.docker_host")


class DockerHostRuntime:
    name = "docker-host"

    def __init__(self, block: DockerHostTarget, environment: EnvironmentSpec):
        self.block = block
        self.env = environment
        self.registry = RegistryClient(
            block.registry,
            auth=(
                (
                    block.registry_credentials.username,
                    block.registry_credentials.password.get_secret_value(),
                )
                if block.registry_credentials
                else None
            ),
        )
        self.admin = proxy.HaproxyAdmin(block.proxy_admin_socket, log=lambda m: _logger().info(m))
        self.routes = {
            service.name: proxy.ServiceRoute(
                service=service.name,
                public_port=proxy.public_port(service.public_url),
                slot_ports=(block.port_base + 2 * i, block.port_base + 2 * i + 1),
                health_path=service.lb_check_path or service.health_path,
            )
            for i, service in enumerate(environment.ordered())
        }

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _docker(self) -> Iterator[docker.DockerClient]:
        try:
            client = self.block.docker_host.get_client()
        except docker.errors.DockerException as exc:
            raise TransientError(
                f"Docker engine at {self.block.docker_host.base_url} is unreachable ({exc}); "
                f"{START_HINT}"
            ) from exc
        with client:
            yield client

    def _auth(self) -> dict[str, str] | None:
        creds = self.block.registry_credentials
        if creds is None:
            return None
        return {"username": creds.username, "password": creds.password.get_secret_value()}

    def _backend(self, service: str) -> str:
        return proxy.backend_name(self.env.name, service)

    # -- step 1: verify and provision ----------------------------------------------------------

    def verify(self) -> InfrastructureReport:
        findings = [
            self._check("docker engine", self._check_docker),
            self._check("registry", self._check_registry),
            self._check("database", lambda: database.check_database(self.block.database)),
            self._check("load balancer", lambda: self.admin.command("show info").split("\n")[1]),
        ]
        base = self.env.build_args.get("BASE_IMAGE")
        if base:
            findings.append(self._check("base image", lambda: self._check_image(base)))
        report = InfrastructureReport(target=self.name, findings=tuple(findings))
        if report.missing:
            problems = "; ".join(f"{f.component}: {f.detail}" for f in report.missing)
            raise ReleaseError(f"environment '{self.env.name}' is not ready: {problems}")
        return report

    @staticmethod
    def _check(component: str, probe) -> Finding:
        try:
            return Finding(component=component, ok=True, detail=str(probe()))
        except (ReleaseError, TransientError) as exc:
            return Finding(component=component, ok=False, detail=str(exc))

    def _check_docker(self) -> str:
        with self._docker() as client:
            try:
                version = client.version()["Version"]
            except docker.errors.DockerException as exc:
                raise TransientError(
                    f"Docker engine at {self.block.docker_host.base_url} is unreachable; {START_HINT}"
                ) from exc
        return f"Docker Engine {version} at {self.block.docker_host.base_url}"

    def _check_registry(self) -> str:
        self.registry.ping()
        return f"registry at {self.block.registry}"

    def _check_image(self, ref: str) -> str:
        with self._docker() as client:
            try:
                client.images.get(ref)
            except docker.errors.ImageNotFound as exc:
                raise ReleaseError(
                    f"base image {ref} is not in the engine and cannot be pulled here; "
                    "`scripts/stack.sh up` builds it"
                ) from exc
        return f"{ref} present"

    def _proxy_config(self) -> str:
        states = self.admin.states()
        live = {name: proxy.live_slot(states, self._backend(name)) for name in self.routes}
        return proxy.render_config(self.env.name, list(self.routes.values()), live)

    def plan_infrastructure(self) -> InfrastructureChange:
        """The one thing this target provisions: the environment's HAProxy frontends and
        backends. A change is a new environment, or new ports or check paths."""
        path = Path(self.block.proxy_config_dir) / f"{self.env.name}.cfg"
        if path.is_file() and path.read_text() == self._proxy_config():
            return InfrastructureChange(target=self.name, summary="load balancer config up to date")
        ports = ", ".join(f"{n} on 127.0.0.1:{r.public_port}" for n, r in self.routes.items())
        action = "update" if path.is_file() else "add"
        return InfrastructureChange(
            target=self.name,
            kind="config",
            summary=f"HAProxy: {action} {path.name} ({ports}) and reload",
            changes=1,
        )

    def provision(self, change: InfrastructureChange) -> InfrastructureReport:
        """Make sure HAProxy has this environment's frontends and backends (reload only if new)."""
        text = self._proxy_config()
        changed = proxy.write_config(self.block.proxy_config_dir, self.env.name, text)
        if changed:  # rare, so a reload is fine
            proxy.reload(self.block.proxy_config_dir, self.block.proxy_pidfile)
            self.admin.wait_for(
                f"the backends of '{self.env.name}' are loaded",
                lambda s: all((self._backend(n), "slot0") in s for n in self.routes),
                timeout=30,
            )
        detail = ", ".join(
            f"{name} on 127.0.0.1:{route.public_port}" for name, route in self.routes.items()
        )
        return InfrastructureReport(
            target=self.name,
            findings=(Finding(component="load balancer", ok=True, detail=detail),),
            changed=("load balancer config",) if changed else (),
        )

    def discard_infrastructure_change(self, change: InfrastructureChange) -> None:
        """Nothing was written while the change waited: nothing to discard."""

    # -- steps 2-3: images ---------------------------------------------------------------------

    def build_image(self, build: BuildSpec) -> BuiltImage:
        local_ref = f"{self.block.registry}/{build.repository}:{build.version}"
        with self._docker() as client:
            return images.build(client, build, local_ref)

    def push_image(self, image: BuiltImage) -> PushedImage:
        repository = self.env.service(image.service).repository
        with self._docker() as client:
            return images.push(client, self.registry, image, repository, self._auth())

    def image_exists(self, service: str, tag: str) -> bool:
        return self.registry.manifest(self.env.service(service).repository, tag) is not None

    def image_reference(self, service: str, tag: str) -> str:
        """The image of `service` at version `tag`, refusing versions the registry does not hold."""
        if not self.image_exists(service, tag):
            raise ReleaseError(
                f"the registry {self.block.registry} has no {service} image for version {tag!r}: "
                "name a version that was released before"
            )
        return f"{self.block.registry}/{self.env.service(service).repository}:{tag}"

    # -- step 4: database ----------------------------------------------------------------------

    def backup_database(self, backup_id: str) -> Backup:
        path = Path(self.block.backup_dir) / self.env.name / f"{backup_id}.dump"
        entries = database.dump(self.block.database, path)
        return Backup(
            backup_id=backup_id,
            location=str(path),
            size_bytes=path.stat().st_size,
            detail=f"pg_dump custom format, {entries} entries, readable by pg_restore",
        )

    def restore_database(self, backup: Backup) -> None:
        database.restore(self.block.database, Path(backup.location))

    def schema_status(self, image: str) -> SchemaStatus:
        data = self._migrate_command(image, ["status"])
        return SchemaStatus(
            applied=tuple(data["applied"]),
            available=tuple(data["available"]),
            pending=tuple(data["pending"]),
            schema_version=data["schema_version"],
        )

    def migrate(
        self, image: str, direction: Literal["up", "down"], steps: int = 1
    ) -> MigrationResult:
        args = [direction] if direction == "up" else [direction, "--steps", str(steps)]
        data = self._migrate_command(image, args)
        applied, reverted = tuple(data.get("applied", ())), tuple(data.get("reverted", ()))
        return MigrationResult(
            direction=direction,
            applied=applied,
            reverted=reverted,
            schema_version=data["schema_version"],
            changed=bool(applied or reverted),
        )

    def _migrate_command(self, image: str, args: list[str]) -> dict:
        owner = self.env.migration_owner()
        if owner is None:
            raise ReleaseError(f"environment '{self.env.name}' has no service that owns migrations")
        command = [*owner.migrate_command, *args]
        with self._docker() as client:
            self._ensure_image(client, image)
            code, out, err = containers.run_once(
                client,
                image,
                command,
                self.block.database.libpq_env(),
                timeout=900,
                name_labels={
                    "flowmasters.environment": self.env.name,
                    "flowmasters.one-off": "migrate",
                },
            )
        if code != 0:
            raise ReleaseError(
                f"`{' '.join(args[:1])}` migrations in {image} exited {code}; nothing after this "
                f"step ran and the previous version keeps serving. Its output:\n{err.strip()[-2000:]}"
            )
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise ReleaseError(
                f"{' '.join(command)} in {image} did not print a JSON result line: {out[-500:]!r}"
            ) from exc

    # -- steps 5-6: services -------------------------------------------------------------------

    def live_revision(self, service: str) -> Revision | None:
        slot = proxy.live_slot(self.admin.states(), self._backend(service))
        if slot is None:
            return None
        with self._docker() as client:
            running = [
                c
                for c in containers.find(client, self.env.name, service, slot)
                if c.status == "running"
            ]
            if not running:
                return None
            return self._revision(running[0])

    @staticmethod
    def _revision(container) -> Revision:
        label = container.labels
        return Revision(
            service=label["flowmasters.service"],
            version=label["flowmasters.version"],
            image=container.attrs["Config"]["Image"],
            image_id=container.image.id,
            revision_id=container.id[:12],
        )

    def deploy_service(self, service: str, image: str, version: str) -> DeployResult:
        backend = self._backend(service)
        live = proxy.live_slot(self.admin.states(), backend)
        previous = self.live_revision(service)
        with self._docker() as client:
            if previous is not None and previous.image_id == self._ensure_image(client, image):
                return DeployResult(
                    service=service,
                    changed=False,
                    previous=previous,
                    current=previous,
                    detail=f"{version} already live; nothing changed",
                )
            new_slot = 1 if live == 0 else 0
            container = self._start_healthy(client, service, image, version, new_slot)
            _logger().info(f"{service} {version}: healthy; switching traffic to slot{new_slot}")
            self.admin.switch(backend, new_slot, live)
            self._write_proxy_state()
            self._retire(client, service, live)
            container.reload()
            current = self._revision(container)
        return DeployResult(
            service=service,
            changed=True,
            previous=previous,
            current=current,
            detail=f"slot{new_slot} live; previous {'kept stopped' if previous else 'none'}",
        )

    def _start_healthy(
        self, client: docker.DockerClient, service: str, image: str, version: str, slot: int
    ):
        """Start `image` on the idle `slot` and wait for its health; remove it if it never is."""
        spec = self.env.service(service)
        port = self.routes[service].slot_ports[slot]
        name = containers.container_name(self.env.name, service, version, slot)
        self._clear_slot(client, service, slot, name)
        env = {**spec.env, "PORT": str(port)}
        if spec.uses_database:
            env.update(self.block.database.libpq_env())
        container = client.containers.run(
            image,
            name=name,
            detach=True,
            network_mode="host",
            environment=env,
            labels=containers.labels(self.env.name, service, version, slot),
            restart_policy={"Name": "unless-stopped"},
        )
        _logger().info(f"{service} {version}: started {name} on port {port}")
        url = f"http://127.0.0.1:{port}{spec.health_path}"
        try:
            containers.wait_healthy(container, url, spec.health_timeout_seconds, _logger().info)
        except ReleaseError:
            container.remove(force=True)
            raise
        return container

    def _retire(self, client: docker.DockerClient, service: str, slot: int | None) -> None:
        """Stop what ran on the old slot (kept for rollback), then prune beyond keep_revisions."""
        if slot is not None:
            for old in containers.find(client, self.env.name, service, slot):
                if old.status == "running":
                    old.stop(timeout=10)
        self._prune(client, service)

    def _ensure_image(self, client: docker.DockerClient, image: str) -> str:
        try:
            return client.images.get(image).id
        except docker.errors.ImageNotFound:
            pass
        try:
            return client.images.pull(image, auth_config=self._auth()).id
        except docker.errors.APIError as exc:
            raise ReleaseError(
                f"image {image} is neither in the engine nor in the registry"
            ) from exc

    def _clear_slot(self, client: docker.DockerClient, service: str, slot: int, name: str) -> None:
        """Free the idle slot: stop what a crashed deploy left running there (it takes no
        traffic), and remove a kept container of the same name (the same version on the same
        slot, e.g. in a rollback), which is recreated from its image."""
        for leftover in containers.find(client, self.env.name, service, slot):
            if leftover.status == "running":
                _logger().warning(f"stopping {leftover.name}: it ran on the idle slot{slot}")
                leftover.stop(timeout=10)
            if leftover.name == name:
                leftover.remove(force=True)

    def _prune(self, client: docker.DockerClient, service: str) -> None:
        found = containers.find(client, self.env.name, service)
        kept = [
            containers.KeptContainer(
                id=c.id, created=c.attrs["Created"], running=c.status == "running"
            )
            for c in found
        ]
        for container_id in containers.to_prune(kept, self.block.keep_revisions):
            client.containers.get(container_id).remove(force=True)

    def _write_proxy_state(self) -> None:
        states = self.admin.states()
        live = {name: proxy.live_slot(states, self._backend(name)) for name in self.routes}
        text = proxy.render_config(self.env.name, list(self.routes.values()), live)
        proxy.write_config(self.block.proxy_config_dir, self.env.name, text)

    # -- step 7: edge --------------------------------------------------------------------------

    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult:
        states = self.admin.states()
        routes = []
        for name in self.routes:
            backend = self._backend(name)
            slot = proxy.live_slot(states, backend)
            status = states[(backend, proxy.server_name(slot))].status if slot is not None else "-"
            if slot is None or status != "UP":
                raise ReleaseError(f"load balancer: {name} has no healthy live server ({status})")
            routes.append(f"{name} -> slot{slot} ({status})")
        return EdgeResult(
            load_balancer="HAProxy: " + ", ".join(routes),
            cdn="none: the Docker-host target has no CDN, so there is nothing to invalidate",
            changed=any(d.changed for d in deployed),
        )
