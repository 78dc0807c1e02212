"""The project's own block: one environment (its target, services, public URLs and checks)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks.aws import AwsTarget
from blocks.targets import DockerHostTarget
from targets.base import CheckSpec, EnvironmentSpec, ServiceSpec
from targets.errors import ReleaseError


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

    target: DockerHostTarget | AwsTarget = Field(
        description="Where the environment runs: a Docker host or AWS; chosen once per run."
    )
    services: list[ServiceSpec] = Field(description="The services, with build and health details.")
    checks: CheckSpec = Field(default_factory=CheckSpec, description="Smoke-check settings.")
    build_args: dict[str, str] = Field(
        default_factory=dict, description="Build arguments for every image (e.g. BASE_IMAGE)."
    )

    def spec(self, name: str) -> EnvironmentSpec:
        return EnvironmentSpec(
            name=name, services=tuple(self.services), checks=self.checks, build_args=self.build_args
        )


def load_environment(name: str) -> FlowmastersEnvironment:
    """Load an environment's block, or say which environments exist and how to add one."""
    try:
        # _sync: a build runs in a thread under an async task, where load() would be a coroutine.
        return FlowmastersEnvironment.load(name, _sync=True)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
    raise ReleaseError(
        f"unknown environment '{name}': no 'Flowmasters Environment' block of that name "
        f"(known: {', '.join(known_environments()) or 'none'}). Describe it in "
        f"deployments/environments/{name}.yaml and run `python -m deployments.register {name}`."
    )


def known_environments() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = client.read_block_documents_by_type(
            block_type_slug="flowmasters-environment", include_secrets=False
        )
    return sorted(d.name for d in docs if d.name)
