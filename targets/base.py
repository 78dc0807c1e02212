"""What a target is asked to do: the protocol every runtime implements, in plain data.

The tasks call a `Target`; the Docker-host and AWS runtimes implement it with their SDKs. Every
value that crosses this boundary is a frozen model of `domain.results`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from domain.migrations import MigrationId
from domain.results import (
    Backup,
    BuildSpec,
    BuiltImage,
    DeployResult,
    EdgeResult,
    InfrastructureChange,
    InfrastructureReport,
    MigrationResult,
    PushedImage,
    Revision,
    SchemaStatus,
)


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
        self,
        image: str,
        direction: Literal["up", "down"],
        steps: int = 1,
        expected: Sequence[MigrationId] = (),
    ) -> MigrationResult: ...

    def deploy_service(
        self, service: str, image: str, version: str, keep_previous: bool = False
    ) -> DeployResult:
        """Serve `image` as `version`. With `keep_previous`, what served before stays running
        out of rotation (a switch back needs no start) until `retire_previous`."""
        ...

    def retire_previous(self, service: str) -> str:
        """Stop (and keep) what runs out of rotation beside the live revision; what was done."""
        ...

    def update_edge(self, deployed: list[DeployResult]) -> EdgeResult: ...
