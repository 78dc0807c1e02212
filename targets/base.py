"""What a target is asked to do, in plain data.

The tasks call a `Target`; the Docker-host and AWS targets implement it with their SDKs. Every value
that crosses this boundary is a small frozen pydantic model, so the same value is a task result, a
cache input, a line of the release report and a field of the release record.
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG = r"^[a-z][a-z0-9-]{0,39}$"
# A Docker tag (what the registry accepts), minus `latest`, which is never a release.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceSpec(Frozen):
    """One deployable service of the application; a third service is configuration, not code."""

    name: str = Field(pattern=SLUG, description="Service name, e.g. backend.")
    context: str = Field(description="Build context, relative to the release source.")
    dockerfile: str = Field(default="Dockerfile", description="Dockerfile inside the context.")
    repository: str = Field(
        description="Image repository in the registry, e.g. flowmasters/backend."
    )
    order: int = Field(description="Deploy order: lower first (backend before frontend).")
    public_url: str = Field(
        description="Where users reach the service, e.g. http://127.0.0.1:8081."
    )
    health_path: str = Field(default="/api/health", description="Path answering 200 when healthy.")
    lb_check_path: str | None = Field(
        default=None,
        description="What the load balancer probes to keep a server in rotation (default: the "
        "health path). It asks 'can it serve?'; the smoke checks ask 'is it the right version?'.",
    )
    owns_migrations: bool = Field(default=False, description="Its image runs the migrations.")
    migrations_dir: str = Field(
        default="migrations", description="Folder of NNNN_name.up.sql files, in the context."
    )
    migrate_command: tuple[str, ...] = Field(
        default=("python3", "/app/migrate.py"),
        description="Command in the image taking up|down|status and printing JSON last.",
    )
    uses_database: bool = Field(default=False, description="Gets the database connection.")
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret runtime settings.")
    health_timeout_seconds: float = Field(default=60, gt=0, description="Budget to become healthy.")


class ProbeSpec(Frozen):
    """One smoke check: GET a service's public URL + path, expect 200 (and the released version)."""

    service: str = Field(description="Service whose public URL is probed.")
    path: str = Field(description="Path to GET, e.g. /api/health.")
    version_field: str | None = Field(
        default="version",
        description="Dotted JSON field that must equal the released version (None: status only).",
    )


class CheckSpec(Frozen):
    """How long and how often the smoke checks probe the public URLs."""

    probes: tuple[ProbeSpec, ...] = Field(default=(), description="What to probe.")
    window_seconds: float = Field(default=5, ge=0, description="Checks keep probing this long.")
    interval_seconds: float = Field(default=0.5, gt=0, description="Pause between probes.")
    request_timeout_seconds: float = Field(default=3, gt=0, description="Timeout of one request.")


class EnvironmentSpec(Frozen):
    """An environment as the flows see it: no target details."""

    name: str = Field(pattern=SLUG)
    services: tuple[ServiceSpec, ...]
    checks: CheckSpec = CheckSpec()
    build_args: dict[str, str] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _one_migration_owner(cls, services: tuple[ServiceSpec, ...]) -> tuple[ServiceSpec, ...]:
        if not services:
            raise ValueError("an environment needs at least one service")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique, got {names}")
        if sum(s.owns_migrations for s in services) > 1:
            raise ValueError("at most one service may own the migrations")
        return services

    def ordered(self) -> list[ServiceSpec]:
        return sorted(self.services, key=lambda s: (s.order, s.name))

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def migration_owner(self) -> ServiceSpec | None:
        return next((s for s in self.services if s.owns_migrations), None)


class Finding(Frozen):
    """One thing `verify` looked at."""

    component: str
    ok: bool
    detail: str


class InfrastructureReport(Frozen):
    target: str
    findings: tuple[Finding, ...]
    changed: tuple[str, ...] = ()

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]


class InfrastructureChange(Frozen):
    """What provisioning would change, proposed and not applied yet (on AWS: a CloudFormation
    change set, created and left for review). `provision(change)` applies exactly this; an
    approval step can show `summary` to a person first."""

    target: str
    kind: str = "none"  # "none", or what applying it does: CREATE / UPDATE (AWS), config (Docker)
    change_id: str | None = None  # the change set's name on AWS
    summary: str = "no changes"
    changes: int = 0

    @property
    def empty(self) -> bool:
        return self.change_id is None and self.changes == 0


class BuildSpec(Frozen):
    """Everything that decides an image's content; its hash is the build's cache key."""

    service: str
    context_dir: str
    dockerfile: str
    repository: str
    version: str
    build_args: dict[str, str]
    context_digest: str


class BuiltImage(Frozen):
    service: str
    image_id: str
    local_ref: str
    version: str


class PushedImage(Frozen):
    service: str
    repository: str
    tag: str
    digest: str
    image_id: str
    pushed: bool = Field(
        description="False when the registry already had this image under the tag."
    )

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class Revision(Frozen):
    """What runs (or ran) for a service: enough to start it again."""

    service: str
    version: str
    image: str
    image_id: str
    revision_id: str = Field(description="Target-specific: a container id, a task definition ARN.")


class DeployResult(Frozen):
    service: str
    changed: bool
    previous: Revision | None
    current: Revision
    detail: str = ""


class SchemaStatus(Frozen):
    applied: tuple[int, ...]
    available: tuple[int, ...]
    pending: tuple[int, ...]
    schema_version: int


class MigrationResult(Frozen):
    direction: Literal["up", "down"]
    applied: tuple[int, ...] = ()
    reverted: tuple[int, ...] = ()
    schema_version: int
    changed: bool


class Backup(Frozen):
    backup_id: str
    location: str
    size_bytes: int
    detail: str


class EdgeResult(Frozen):
    load_balancer: str
    cdn: str
    changed: bool


class Target(Protocol):
    """The operations the tasks need; one implementation per kind of target."""

    name: str

    def verify(self) -> InfrastructureReport: ...

    def plan_infrastructure(self) -> InfrastructureChange: ...

    def provision(self, change: InfrastructureChange) -> InfrastructureReport: ...

    def discard_infrastructure_change(self, change: InfrastructureChange) -> None: ...

    def build_image(self, build: BuildSpec) -> BuiltImage: ...

    def push_image(self, image: BuiltImage) -> PushedImage: ...

    def image_exists(self, service: str, tag: str) -> bool: ...

    def image_reference(self, service: str, tag: str) -> str: ...

    def live_revision(self, service: str) -> Revision | None: ...

    def schema_status(self, image: str) -> SchemaStatus: ...

    def backup_database(self, backup_id: str) -> Backup: ...

    def restore_database(self, backup: Backup) -> None: ...

    def migrate(
        self, image: str, direction: Literal["up", "down"], steps: int = 1
    ) -> MigrationResult: ...

    def deploy_service(self, service: str, image: str, version: str) -> DeployResult: ...

    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult: ...
