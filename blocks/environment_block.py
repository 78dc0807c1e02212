"""The project's own block: one environment (its target, services, public URLs and checks).

What the UI shows and `deployments.register` saves. A run does not import this module: its
`target` field names every kind's block class, so importing it imports every target's SDK.
`blocks.environment.load_environment` reads the same document and imports only its target.
"""

from __future__ import annotations

from typing import Union

from prefect.blocks.core import Block
from pydantic import Field

from domain.checks import CheckSpec
from domain.environment import EnvironmentSpec
from domain.services import ServiceSpec
from targets.registry import KINDS

# The `target` field: any kind's block (Prefect resolves which on load; the UI offers each).
TargetBlock = Union[tuple(kind.block for kind in KINDS)]  # type: ignore[valid-type]  # noqa: UP007


class FlowmastersEnvironment(Block):
    """An environment Flow Masters is released to; the block's name is the environment's name.

    Example:
        ```python
        from blocks.environment_block import FlowmastersEnvironment
        env = FlowmastersEnvironment.load("local")
        ```
    """

    _block_type_name = "Flowmasters Environment"
    _description = "An environment of Flow Masters: its target, services, public URLs and checks."

    target: TargetBlock = Field(
        description="Where the environment runs: a Docker host or AWS; chosen once per run."
    )
    services: list[ServiceSpec] = Field(description="The services, with build and health details.")
    checks: CheckSpec = Field(default_factory=CheckSpec, description="Smoke-check settings.")
    build_args: dict[str, str] = Field(
        default_factory=dict, description="Build arguments for every image (e.g. BASE_IMAGE)."
    )
    source: str | None = Field(
        default=None, description="The app's source folder when a run names none."
    )

    def spec(self, name: str) -> EnvironmentSpec:
        return EnvironmentSpec(
            name=name,
            services=tuple(self.services),
            checks=self.checks,
            build_args=self.build_args,
            source=self.source,
        )
