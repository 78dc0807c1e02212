"""What each step returns, in plain data: the values that cross the target boundary."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from domain.frozen import Frozen
from domain.migrations import MigrationId


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
    target: str | None = None  # the Dockerfile stage (a migrator); None: the last stage
    version_build_arg: str = "APP_VERSION"  # the build argument that carries `version`

    @property
    def source_key(self) -> str:
        """What the image is built from, whatever the version it would be called: two builds
        with the same key differ only in the version baked into them. A service whose live
        image has the key it would be built with now is not built or deployed again."""
        parts = {
            "context": self.context_digest,
            "dockerfile": self.dockerfile,
            "target": self.target,
            "version_build_arg": self.version_build_arg,
            "build_args": {k: v for k, v in self.build_args.items() if k != self.version_build_arg},
        }
        return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


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
    kept: bool = Field(
        default=False,
        description="The service serves this image already, built from the same source: this "
        "release neither built nor pushed it, and does not deploy it again.",
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

    @classmethod
    def unchanged(cls, live: Revision, detail: str) -> DeployResult:
        """A deploy that found `live` already running what it was asked for."""
        return cls(service=live.service, changed=False, previous=live, current=live, detail=detail)


class SchemaStatus(Frozen):
    """Migration ids are numbers (the stand-in) or names (Payload); the schema version is the
    latest applied one (None: none yet, or not known on this target)."""

    applied: tuple[MigrationId, ...]
    available: tuple[MigrationId, ...]
    pending: tuple[MigrationId, ...]
    schema_version: MigrationId | None


class MigrationResult(Frozen):
    direction: Literal["up", "down"]
    applied: tuple[MigrationId, ...] = ()
    reverted: tuple[MigrationId, ...] = ()
    schema_version: MigrationId | None
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
