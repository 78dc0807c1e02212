"""The project's own block: one environment (its target, services, public URLs and checks).

A run reads it once (`load_environment`) and hands the `Environment` to every task; a task asks
it for its target's runtime (`connect`), which reads nothing more from the server.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from pydantic import BaseModel, ConfigDict, Field

from domain.checks import CheckSpec
from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from domain.services import ServiceSpec
from targets import registry
from targets.base import Target
from targets.registry import TargetBlock


class FlowmastersEnvironment(Block):
    """An environment Flow Masters is released to; the block's name is the environment's name.

    Example:
        ```python
        from blocks.environment import FlowmastersEnvironment
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


class Environment(BaseModel):
    """An environment as a run holds it: what is released (`spec`) and where (`target`).

    Plain data, passed to the tasks as a parameter. Its target block's secrets stay SecretStr
    (masked wherever it is serialised, in a cache key say) until a runtime unwraps them.
    """

    model_config = ConfigDict(frozen=True)

    spec: EnvironmentSpec
    target: TargetBlock

    @property
    def name(self) -> str:
        return self.spec.name

    def connect(self) -> Target:
        return registry.connect(self.target, self.spec)


def load_environment(name: str) -> Environment:
    """Read an environment's block (one read from the server), or say which environments exist
    and how to add one."""
    try:  # _sync: load() is sync-compatible, and would be a coroutine in an async context
        block = FlowmastersEnvironment.load(name, _sync=True)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise ReleaseError(
            f"unknown environment '{name}': no 'Flowmasters Environment' block of that name "
            f"(known: {', '.join(known_environments()) or 'none'}). Describe it in "
            f"deployments/environments/{name}.yaml and run `python -m deployments.register {name}`."
        ) from None
    return Environment(spec=block.spec(name), target=block.target)


def known_environments() -> list[str]:
    with get_client(sync_client=True) as client:
        docs = client.read_block_documents_by_type(
            block_type_slug="flowmasters-environment", include_secrets=False
        )
    return sorted(d.name for d in docs if d.name)
