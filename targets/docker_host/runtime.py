"""The Docker-host runtime: what the tasks call when an environment's target is a Docker host.

Deploy = start the new version on the idle slot beside the live one, wait until it answers its
health check, switch HAProxy to it, drain the old container and stop it, keeping it (stopped) for
rollback. A release keeps the old one running out of rotation until its checks and bake pass, so
that going back is a switch, not a start. Given an older image, the same function is the rollback.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path

import docker
import docker.errors
import httpx
from docker.models.containers import Container

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError, TransientError
from domain.migrations import Applied, MigrationTable
from domain.results import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    Finding,
    InfrastructureChange,
    InfrastructureReport,
    PushedImage,
    Revision,
)
from domain.services import ServiceSpec
from domain.traffic import Traffic, traffic_between
from targets import images, migrations, secrets, verify
from targets.docker_host import cdn, containers, database, metrics, proxy
from targets.docker_host import push as pushing
from targets.docker_host.blocks import DockerHostTarget
from targets.docker_host.registry import RegistryClient
from targets.runlog import run_logger

START_HINT = "start the local stack with `scripts/stack.sh up`"


def volume_name(environment: str, name: str) -> str:
    return f"fm-{environment}-{name}"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    return run_logger("flowmasters.docker_host")


class DockerHostRuntime(migrations.OneOffMigrations):
    name = "docker-host"

    def __init__(self, block: DockerHostTarget, environment: EnvironmentSpec):
        self.block = block
        self.env = environment
        login = self._auth()
        self.registry = RegistryClient(
            block.registry, auth=(login["username"], login["password"]) if login else None
        )
        self.admin = proxy.HaproxyAdmin(block.proxy_admin_socket, log=lambda m: _logger().info(m))
        self.routes = {
            service.name: proxy.ServiceRoute(
                service=service.name,
                public_port=proxy.public_port(service.public_url),
                slot_ports=(block.port_base + 2 * i, block.port_base + 2 * i + 1),
                health_path=service.lb_check_path or service.health_path,
                private_paths=(service.admin_path,) if service.admin_path else (),
            )
            for i, service in enumerate(environment.ordered())
        }

    # -- connections -------------------------------------------------------------------------

    def _engine(self) -> AbstractContextManager[docker.DockerClient]:
        return images.engine(self.block.docker_host, START_HINT)

    def _auth(self) -> dict[str, str] | None:
        creds = self.block.registry_credentials
        if creds is None:
            return None
        return {"username": creds.username, "password": creds.password.get_secret_value()}

    def _app_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The secrets a container gets at its start: the database connection and the service's
        `secret_env`, read from their blocks now (never baked into an image or logged)."""
        env = self.block.database.app_env() if spec.uses_database or spec.owns_migrations else {}
        return {**env, **secrets.secret_env(spec.secret_env)}

    def _volumes(self, client: docker.DockerClient, spec: ServiceSpec) -> dict[str, dict[str, str]]:
        """The service's named volumes (uploads), the same in every slot and every version:
        `fm-<env>-<name>`, labelled with the environment. Creating an existing one returns it;
        a release or rollback never removes one."""
        mounts = {}
        for name, path in spec.volumes.items():
            volume = volume_name(self.env.name, name)
            client.volumes.create(volume, labels={"flowmasters.environment": self.env.name})
            mounts[volume] = {"bind": path, "mode": "rw"}
        return mounts

    def _backend(self, service: str) -> str:
        return proxy.backend_name(self.env.name, service)

    def _repository(self, image: str) -> str:
        return f"{self.block.registry}/{self.env.repository_of(image)}"

    # -- step 1: verify and provision ----------------------------------------------------------

    def verify(self) -> InfrastructureReport:
        probes: list[verify.Probe] = [
            ("docker engine", self._check_docker),
            ("registry", self._check_registry),
            ("database", lambda: database.check_database(self.block.database)),
            ("load balancer", lambda: self.admin.command("show info").split("\n")[1]),
            (
                "ports",
                lambda: proxy.check_ports(list(self.routes.values()), proxy.ephemeral_range()),
            ),
            ("slot ports", self._check_slots),
        ]
        if self.block.cdn is not None:
            probes.append(("cdn", self._check_cdn))
        base = self.env.build_args.get("BASE_IMAGE")
        if base:
            probes.append(("base image", lambda: self._check_image(base)))
        return verify.inspect(self.name, self.env.name, probes)

    def _check_cdn(self) -> str:
        """A wrong admin secret stops the release here, before anything changes (the edge step
        would meet it after the switch). A CDN that does not answer does not: HAProxy serves the
        public URLs from the origin meanwhile, and the edge step says it invalidated nothing."""
        assert self.block.cdn is not None
        try:
            self.block.cdn.client().commands(["ping"])
        except TransientError as exc:
            return f"does not answer ({exc}): the public URLs are served without it"
        return f"Varnish at {self.block.cdn.admin} answers"

    def _check_docker(self) -> str:
        with self._engine() as client:
            try:
                version = client.version()["Version"]
            except docker.errors.DockerException as exc:
                raise images.engine_error(self.block.docker_host, exc, START_HINT) from exc
        return f"Docker Engine {version} at {self.block.docker_host.base_url}"

    def _check_slots(self) -> str:
        """No other process holds a slot port: a new version would fail to start there after
        the release had begun (a switched service would then be switched back)."""
        routes = list(self.routes.values())
        with self._engine() as client:
            # The containers are listed before and after the ports are read: a release running
            # meanwhile may stop or start one, and its port must count as ours either way.
            ours = self._running_slots(client)
            in_use = {p for r in routes for p in r.slot_ports if proxy.port_in_use(p)}
            ours |= self._running_slots(client)
        squatted = proxy.squatted_slots(routes, in_use, ours)
        if squatted:
            first = squatted[0].split()[1]
            raise ReleaseError(
                f"{', '.join(squatted)} taken by another process, not by this environment's "
                f"containers: a new version cannot start there. Stop that process (`ss -ltnp "
                f"'sport = :{first}'` names it) or choose another port_base"
            )
        return f"{sum(len(r.slot_ports) for r in routes)} slot ports free or ours"

    def _running_slots(self, client: docker.DockerClient) -> set[tuple[str, int]]:
        return {
            (c.labels["flowmasters.service"], int(c.labels["flowmasters.slot"]))
            for c in containers.find_running(client, self.env.name)
            if "flowmasters.slot" in c.labels  # a migration's one-off container has none
        }

    def _check_registry(self) -> str:
        self.registry.ping()
        return f"registry at {self.block.registry}"

    def _check_image(self, ref: str) -> str:
        with self._engine() as client:
            try:
                client.images.get(ref)
            except docker.errors.ImageNotFound as exc:
                raise ReleaseError(
                    f"base image {ref} is not in the engine and cannot be pulled here; "
                    "`scripts/stack.sh up` builds it"
                ) from exc
        return f"{ref} present"

    def _live_slots(self) -> dict[str, int | None]:
        states = self.admin.states()
        return {name: proxy.live_slot(states, self._backend(name)) for name in self.routes}

    def _map_path(self) -> str:
        """The environment's live map: each service's live version and slot (the CDN's key),
        and whether a canary runs."""
        return proxy.map_path(self.block.proxy_config_dir, self.env.name)

    def _proxy_config(
        self,
        live: dict[str, int | None] | None = None,
        canaries: dict[str, proxy.Canary] | None = None,
    ) -> str:
        live = self._live_slots() if live is None else live
        return proxy.render_config(
            self.env.name,
            list(self.routes.values()),
            live,
            live_map=self._map_path(),
            cdn=self.block.cdn is not None,
            canaries=canaries,
        )

    def _canaries(
        self, states: dict[tuple[str, str], proxy.ServerState]
    ) -> dict[str, proxy.Canary]:
        found = {n: proxy.running_canary(states, self._backend(n)) for n in self.routes}
        return {name: canary for name, canary in found.items() if canary is not None}

    def _proxy_map(
        self, live: dict[str, int | None], canaries: dict[str, proxy.Canary] | None = None
    ) -> str:
        versions = {}
        for name, slot in live.items():
            revision = self._revision_on(name, slot)
            versions[name] = revision.version if revision else None
        return proxy.render_map(self.env.name, list(self.routes.values()), live, versions, canaries)

    def _ports(self) -> str:
        return ", ".join(f"{n} on 127.0.0.1:{r.public_port}" for n, r in self.routes.items())

    def plan_infrastructure(self) -> InfrastructureChange:
        """The one thing this target provisions: the environment's HAProxy frontends and
        backends. A change is a new environment, or new ports or check paths."""
        path = Path(self.block.proxy_config_dir) / f"{self.env.name}.cfg"
        if path.is_file() and path.read_text() == self._proxy_config():
            return InfrastructureChange(target=self.name, summary="load balancer config up to date")
        action = "update" if path.is_file() else "add"
        return InfrastructureChange(
            target=self.name,
            kind="config",
            summary=f"HAProxy: {action} {path.name} ({self._ports()}) and reload",
            changes=1,
        )

    def provision(self, change: InfrastructureChange) -> InfrastructureReport:
        """Make sure HAProxy has this environment's frontends and backends (reload only if new)."""
        with proxy.config_lock(self.block.proxy_config_dir):
            changed = self._write_proxy_config()
            if changed:  # rare, so a reload is fine
                proxy.reload(self.block.proxy_config_dir, self.block.proxy_pidfile)
                self.admin.wait_for(
                    f"the backends of '{self.env.name}' are loaded",
                    lambda s: all((self._backend(n), "slot0") in s for n in self.routes),
                    timeout=30,
                )
        return InfrastructureReport(
            target=self.name,
            findings=(Finding(component="load balancer", ok=True, detail=self._ports()),),
            changed=("load balancer config",) if changed else (),
        )

    def discard_infrastructure_change(self, change: InfrastructureChange) -> None:
        """Nothing was written while the change waited: nothing to discard."""

    def _write_proxy_config(self) -> bool:
        """The environment's HAProxy file with each service's live slot, and its live map first
        (the config names it); True when the config changed (the map changes at runtime)."""
        states = self.admin.states()
        live = {name: proxy.live_slot(states, self._backend(name)) for name in self.routes}
        canaries = self._canaries(states)
        proxy.write_config(
            self.block.proxy_config_dir,
            self.env.name,
            self._proxy_map(live, canaries),
            suffix=".map",
        )
        return proxy.write_config(
            self.block.proxy_config_dir, self.env.name, self._proxy_config(live, canaries)
        )

    def _publish_live(self, service: str, slot: int, version: str) -> None:
        """Tell the CDN (through HAProxy's live map) which version and slot now serve `service`:
        from this moment its pages are looked up under the new version. A canary, if one ran,
        is over: every client goes where the weights send it, through the CDN."""
        path = self._map_path()
        if not Path(path).is_file():
            return
        backend = self._backend(service)
        self.admin.set_map(path, f"{backend}.slot", proxy.server_name(slot))
        self.admin.set_map(path, f"{backend}.version", version)
        self.admin.set_map(path, f"{backend}.canary", "0")

    # -- steps 2-3: images ---------------------------------------------------------------------

    def build_image(self, build: BuildSpec) -> BuiltImage:
        with self._engine() as client:
            return images.build(client, build, f"{self._repository(build.service)}:{build.version}")

    def push_image(self, image: BuiltImage) -> PushedImage:
        """Over the distribution API, each request retried where it fails (push.py); the
        engine keeps the image under the registry's name, which deploys run."""
        repository = self.env.repository_of(image.service)
        login = self._auth()

        def push() -> None:
            with self._engine() as client:
                sent = pushing.push(
                    client, image.image_id, self.block.registry, repository, image.version,
                    (login["username"], login["password"]) if login else None,
                )  # fmt: skip
                client.images.get(image.image_id).tag(
                    self._repository(image.service), image.version
                )
            _logger().info(
                f"{image.service} {image.version}: pushed {len(sent)} blob(s); the registry had "
                "the others"
            )

        return images.push_once(
            image,
            self._repository(image.service),
            lambda: self.registry.manifest(repository, image.version),
            push,
        )

    def image_exists(self, service: str, tag: str) -> bool:
        return self.registry.manifest(self.env.repository_of(service), tag) is not None

    def image_reference(self, service: str, tag: str) -> str:
        """The image of `service` at version `tag`, refusing versions the registry does not hold."""
        if not self.image_exists(service, tag):
            raise ReleaseError(
                f"the registry {self.block.registry} has no {service} image for version {tag!r}: "
                "name a version that was released before"
            )
        return f"{self._repository(service)}:{tag}"

    # -- step 4: database ----------------------------------------------------------------------

    def backup_database(self, backup_id: str) -> Backup:
        path = Path(self.block.backup_dir) / self.env.name / f"{backup_id}.dump"
        entries, taken = database.dump(self.block.database, path)
        if not taken:
            _logger().info(f"{path} exists already (a re-run of this release): reusing it")
        return Backup(
            backup_id=backup_id,
            location=str(path),
            size_bytes=path.stat().st_size,
            detail=f"pg_dump custom format, {entries} entries, readable by pg_restore",
        )

    def restore_database(self, backup: Backup) -> None:
        database.restore(self.block.database, Path(backup.location))

    def _read_table(self, table: MigrationTable, image: str) -> tuple[Applied, ...]:
        """Directly, with psql: the database is on this host (`image` is not needed)."""
        return database.read_migration_table(self.block.database, table)

    def _run_once(
        self, owner: ServiceSpec, image: str, command: list[str]
    ) -> migrations.CommandRun:
        """`command` in a one-off container of `image`, with the database connection."""
        with self._engine() as client:
            self._ensure_image(client, image)
            code, out, err = containers.run_once(
                client,
                image,
                command,
                {**self._app_env(owner), "PGAPPNAME": "flowmasters-migrate"},
                timeout=900,
                name_labels={
                    "flowmasters.environment": self.env.name,
                    "flowmasters.one-off": "migrate",
                },
            )
        return migrations.CommandRun(code, tuple(out.splitlines()), tuple(err.splitlines()))

    # -- steps 5-6: services -------------------------------------------------------------------

    def live_revision(self, service: str) -> Revision | None:
        return self._revision_on(
            service, proxy.live_slot(self.admin.states(), self._backend(service))
        )

    def _revision_on(self, service: str, slot: int | None) -> Revision | None:
        """What runs on `slot` of `service` (the live slot, read from HAProxy by the caller)."""
        if slot is None:
            return None
        with self._engine() as client:
            running = [
                c
                for c in containers.find(client, self.env.name, service, slot)
                if c.status == "running"
            ]
            return self._revision(running[0]) if running else None

    @staticmethod
    def _revision(container: Container) -> Revision:
        label = container.labels
        return Revision(
            service=label["flowmasters.service"],
            version=label["flowmasters.version"],
            image=container.attrs["Config"]["Image"],
            image_id=container.image.id,
            revision_id=container.id[:12],
        )

    def deploy_service(
        self, service: str, image: str, version: str, keep_previous: bool = False
    ) -> DeployResult:
        """Serve `image` from the idle slot, then switch. When that slot still runs the image
        (the previous revision a release kept running through its checks), the switch is all
        there is to do: that is the instant switch back. With `keep_previous`, the old slot's
        container keeps running out of rotation until `retire_previous`; else it is stopped."""
        backend = self._backend(service)
        states = self.admin.states()
        live = proxy.live_slot(states, backend)
        previous = self._revision_on(service, live)
        spec = self.env.service(service)
        with self._engine() as client:
            image_id = self._ensure_image(client, image)
            if live is not None and previous is not None and previous.image_id == image_id:
                self._finish_switch(states, service, live, version)
                return DeployResult.unchanged(previous, f"{version} already live; nothing changed")
            new_slot = 1 if live == 0 else 0
            container = self._standing_by(client, spec, image_id, version, new_slot)
            how = "switched to the running" if container else "started"
            if container is None:
                container = self._start_healthy(client, spec, image, version, new_slot)
            _logger().info(f"{service} {version}: healthy; switching traffic to slot{new_slot}")
            with proxy.config_lock(self.block.proxy_config_dir):
                self.admin.switch(
                    backend,
                    new_slot,
                    live,
                    moved=lambda: self._publish_live(service, new_slot, version),
                )
                self._write_proxy_config()
            if keep_previous:
                self._prune(client, service)
            else:
                self._retire(client, service, live)
            container.reload()
            current = self._revision(container)
        kept = "running out of rotation" if keep_previous else "kept stopped"
        return DeployResult(
            service=service,
            changed=True,
            previous=previous,
            current=current,
            detail=f"{how} {container.name} on slot{new_slot}; "
            f"previous {kept if previous else 'none'}",
        )

    def _finish_switch(
        self,
        states: dict[tuple[str, str], proxy.ServerState],
        service: str,
        live: int,
        version: str,
    ) -> None:
        """The image is live on `live`: finish what a deploy that switched and then failed may
        have left undone (its retry lands here). Park the other slot if it still takes traffic
        (the switch stopped before the drain); point the CDN at the live version; write the
        config file (a no-op when current)."""
        backend = self._backend(service)
        other = 1 - live
        with proxy.config_lock(self.block.proxy_config_dir):
            if proxy.in_rotation(states.get((backend, proxy.server_name(other)))):
                _logger().info(f"{backend}: slot{other} is still in rotation beside slot{live}")
                self.admin.switch(backend, live, other)
            self._publish_live(service, live, version)
            self._write_proxy_config()

    def _standing_by(
        self, client: docker.DockerClient, spec: ServiceSpec, image_id: str, version: str, slot: int
    ) -> Container | None:
        """The container running `image_id` as `version` on the idle `slot` and answering its
        health check, if there is one: it needs no start."""
        for container in containers.find(client, self.env.name, spec.name, slot):
            running = container.status == "running" and container.image.id == image_id
            if not running or container.labels.get("flowmasters.version") != version:
                continue
            port = self.routes[spec.name].slot_ports[slot]
            url = f"http://127.0.0.1:{port}{spec.health_path}"
            if containers.answers(url):
                return container
            _logger().info(f"{container.name} runs but {url} does not answer 200: starting anew")
        return None

    # -- canary: the new version beside the stable one, on a share of new users -------------------

    def start_canary(self, service: str, image: str, version: str) -> DeployResult:
        """Start `image` on the idle slot beside the live (stable) one and wait until HAProxy
        sees it healthy; it takes no user yet (weight 0). From here a client keeps the slot it
        got (a cookie), and the service's pages go past the CDN. Idempotent: a canary already
        running this image is reused."""
        backend = self._backend(service)
        live = proxy.live_slot(self.admin.states(), backend)
        stable = self._revision_on(service, live)
        if live is None or stable is None:
            raise ReleaseError(f"{service}: nothing serves it yet, so a canary has no stable")
        slot = 1 - live
        spec = self.env.service(service)
        with self._engine() as client:
            image_id = self._ensure_image(client, image)
            container = self._standing_by(client, spec, image_id, version, slot)
            if container is None:
                container = self._start_healthy(client, spec, image, version, slot)
            with proxy.config_lock(self.block.proxy_config_dir):
                self.admin.set_weight(backend, slot, 0)
                self.admin.set_weight(backend, live, 1)
                self.admin.set_state(backend, slot, "ready")
                key = (backend, proxy.server_name(slot))
                self.admin.wait_for(
                    f"{key[1]} of {backend} is UP", lambda s: proxy.is_serving(s[key].status), 30
                )
                self.admin.set_map(self._map_path(), f"{backend}.canary", "1")
                self._write_proxy_config()  # a reload (another environment's) keeps it
            container.reload()
            current = self._revision(container)
        return DeployResult(
            service=service,
            changed=True,
            previous=stable,
            current=current,
            detail=f"canary {container.name} on slot{slot} beside {stable.version} on slot{live}",
        )

    def _canary_slots(self, service: str) -> tuple[str, int, int]:
        backend = self._backend(service)
        live = proxy.live_slot(self.admin.states(), backend)
        if live is None:
            raise ReleaseError(f"{service}: no live slot, so no canary runs beside it")
        return backend, 1 - live, live

    def set_canary_weight(self, service: str, percent: int) -> str:
        """`percent` of new users to the canary, the rest to the stable, at once (no reload)."""
        backend, canary, stable = self._canary_slots(service)
        canary_weight, stable_weight = proxy.canary_weights(percent)
        with proxy.config_lock(self.block.proxy_config_dir):
            self.admin.set_weight(backend, canary, canary_weight)
            self.admin.set_weight(backend, stable, stable_weight)
            self._write_proxy_config()
        return f"{percent} % of new users to slot{canary}, {100 - percent} % to slot{stable}"

    def abort_canary(self, service: str) -> str:
        """Every user to the stable version, at once: the canary out of rotation (its container
        keeps running there, for inspection), the stable in it (a promotion that failed half
        way may have left it draining), the cookies and the CDN's pass-through off. Then the
        weights back to the default: the canary's state, not its weight, already keeps users
        away, so weights HAProxy refuses to change are reported, not fatal."""
        backend, canary, stable = self._canary_slots(service)
        with proxy.config_lock(self.block.proxy_config_dir):
            self.admin.set_state(backend, canary, "maint")
            self.admin.set_state(backend, stable, "ready")
            self.admin.set_map(self._map_path(), f"{backend}.canary", "0")
            done = f"slot{canary} out of rotation; every user on slot{stable}"
            try:
                self.admin.set_weight(backend, canary, 0)
                self.admin.set_weight(backend, stable, 1)
            except (ReleaseError, TransientError) as exc:
                done += f" (its weights were left as they were: {exc})"
            self._write_proxy_config()
        return done

    def slot_url(self, service: str, role: str) -> str:
        """The base URL of `service`'s `role` slot ("live" or "beside"), past HAProxy."""
        live = proxy.live_slot(self.admin.states(), self._backend(service))
        slot = (live if role == "live" else 1 - live) if live is not None else 0
        return f"http://127.0.0.1:{self.routes[service].slot_ports[slot]}"

    def traffic(self, service: str, role: str, start: float, end: float) -> Traffic | None:
        """What reached `service`'s `role` slot ("live": the stable during a canary, else the
        new version; "beside": the canary, or the previous version a release keeps) between
        `start` and `end` (epoch seconds); after a reload of HAProxy in the window, since the
        reload. None when the service has no live slot. Raises `metrics.MetricsUnavailable`
        without a metrics source."""
        if not self.block.prometheus_url:
            raise metrics.MetricsUnavailable(
                "this Docker host names no metrics source (the target's `metrics: {prometheus: "
                "URL}`)"
            )
        backend = self._backend(service)
        live = proxy.live_slot(self.admin.states(), backend)
        if live is None:
            return None
        server = proxy.server_name(live if role == "live" else 1 - live)
        source = metrics.Prometheus(self.block.prometheus_url)
        return traffic_between(
            source.reading(backend, server, start), source.reading(backend, server, end)
        )

    def retire_previous(self, service: str) -> str:
        """After the release passed its checks and bake: stop what runs on the idle slot (the
        previous revision, kept stopped for a rollback) and prune beyond keep_revisions."""
        live = proxy.live_slot(self.admin.states(), self._backend(service))
        if live is None:
            return "no live slot: nothing stopped"
        with self._engine() as client:
            stopped = self._retire(client, service, 1 - live)
        return f"stopped {', '.join(stopped)} (kept for rollback)" if stopped else "none running"

    def _start_healthy(
        self, client: docker.DockerClient, spec: ServiceSpec, image: str, version: str, slot: int
    ) -> Container:
        """Start `image` on the idle `slot` and wait for its health; remove it if it never is."""
        port = self.routes[spec.name].slot_ports[slot]
        name = containers.container_name(self.env.name, spec.name, version, slot)
        self._clear_slot(client, spec.name, slot, name)
        # FM_ENVIRONMENT: what a service shares with others on the host (a cache's keys) is
        # its environment's alone.
        env = {
            **spec.env,
            **self._app_env(spec),
            "PORT": str(port),
            "FM_ENVIRONMENT": self.env.name,
        }
        container = client.containers.run(
            image,
            name=name,
            detach=True,
            network_mode="host",
            environment=env,
            volumes=self._volumes(client, spec),
            labels=containers.labels(self.env.name, spec.name, version, slot),
            restart_policy={"Name": "unless-stopped"},
        )
        _logger().info(f"{spec.name} {version}: started {name} on port {port}")
        url = f"http://127.0.0.1:{port}{spec.health_path}"
        try:
            containers.wait_healthy(container, url, spec.health_timeout_seconds, _logger().info)
        except ReleaseError:
            container.remove(force=True)
            raise
        return container

    def _retire(self, client: docker.DockerClient, service: str, slot: int | None) -> list[str]:
        """Stop what ran on the old slot (kept for rollback), then prune beyond keep_revisions;
        the names of the containers stopped."""
        stopped = []
        if slot is not None:
            for old in containers.find(client, self.env.name, service, slot):
                if old.status == "running":
                    old.stop(timeout=10)
                    stopped.append(old.name)
        self._prune(client, service)
        return stopped

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
                _logger().info(f"stopping {leftover.name}: it ran out of rotation on slot{slot}")
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

    # -- step 7: edge --------------------------------------------------------------------------

    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult:
        states = self.admin.states()
        routes = []
        for name in self.routes:
            backend = self._backend(name)
            slot = proxy.live_slot(states, backend)
            status = states[(backend, proxy.server_name(slot))].status if slot is not None else "-"
            if slot is None or not proxy.is_serving(status):
                raise ReleaseError(f"load balancer: {name} has no healthy live server ({status})")
            routes.append(f"{name} -> slot{slot} ({status})")
        return EdgeResult(
            load_balancer="HAProxy: " + ", ".join(routes),
            cdn=self._update_cdn([d for d in deployed if d.changed]),
            changed=any(d.changed for d in deployed),
        )

    def _update_cdn(self, changed: list[DeployResult]) -> str:
        """Ban every page of each service that changed (in every version: the CDN keys pages by
        version, so none of the previous version's was served after the switch; this frees them,
        and a version the release or rollback brings back starts from fresh pages), then keep
        the new version's static assets in the CDN for the pages of this version that users
        now load. A CDN that does not answer fails nothing: users are served by HAProxy alone
        (scripts/stack.sh makes the origin the CDN's backup) and the row says so."""
        if self.block.cdn is None:
            return "none: this Docker host has no CDN (the target's `cdn`), nothing to invalidate"
        if not changed:
            return "nothing changed, nothing invalidated"
        names = [d.service for d in changed]
        try:
            self.block.cdn.client().commands(
                f"ban {cdn.ban_expression(self._backend(name))}" for name in names
            )
        except TransientError as exc:
            _logger().warning(f"CDN: {exc}; not invalidated")
            return f"unreachable, nothing invalidated ({exc}); users are served without it"
        kept = [self._keep_assets(name) for name in names]
        return f"banned every page of {', '.join(names)} (all versions){''.join(kept)}"

    def _keep_assets(self, service: str) -> str:
        """Fetch through the CDN every static asset the service's probed pages refer to."""
        spec = self.env.service(service)
        base = spec.public_url.rstrip("/")
        paths = [p.path for p in self.env.checks.probes if p.service == service]
        assets: list[str] = []
        with httpx.Client(base_url=base, timeout=10) as http:
            for path in dict.fromkeys(paths):
                try:
                    page = http.get(path)
                except httpx.TransportError:
                    continue
                if "html" in page.headers.get("content-type", ""):
                    assets += [a for a in cdn.asset_paths(page.text) if a not in assets]
            try:
                missing = [a for a in assets if http.get(a).status_code != 200]
            except httpx.TransportError as exc:
                raise TransientError(f"CDN: fetching {service}'s static assets: {exc}") from exc
        if not assets:
            return ""
        if missing:
            raise ReleaseError(
                f"CDN: {len(missing)} of {len(assets)} static assets of {service}'s pages do not "
                f"answer 200 (first: {missing[0]}): its pages would load broken"
            )
        return f"; keeps {service}'s {len(assets)} static assets"
