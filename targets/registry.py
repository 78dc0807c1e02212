"""Which target runs an environment: the one place that maps a target to its block and runtime.

An environment's block names its target block; `connect` turns that block into the runtime the
tasks call, once per task and without reading anything from the server. A new target is a folder
under targets/ (its blocks, runtime, SDK modules and description) and one line in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from prefect.blocks.core import Block

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from targets.aws import description as aws_description
from targets.aws.blocks import AwsTarget
from targets.aws.runtime import AwsRuntime
from targets.base import Target
from targets.docker_host import description as docker_host_description
from targets.docker_host.blocks import DockerHostTarget
from targets.docker_host.runtime import DockerHostRuntime


@dataclass(frozen=True)
class TargetKind:
    """A kind of target: its `type:` in an environment description, its block, its runtime."""

    type: str
    block: type[Block]
    runtime: Callable[[Any, EnvironmentSpec], Target]
    register: Callable[[str, dict[str, Any]], Block]  # a description's `target:` -> saved blocks


KINDS: tuple[TargetKind, ...] = (
    TargetKind(
        "docker-host", DockerHostTarget, DockerHostRuntime, docker_host_description.register
    ),
    TargetKind("aws", AwsTarget, AwsRuntime, aws_description.register),
)

# The environment block's `target` field: any kind's block (Prefect resolves which on load).
TargetBlock = Union[tuple(kind.block for kind in KINDS)]  # type: ignore[valid-type]  # noqa: UP007


def connect(block: Block, environment: EnvironmentSpec) -> Target:
    """The runtime of `block` for `environment`: the tasks' only way to a target."""
    for kind in KINDS:
        if isinstance(block, kind.block):
            return kind.runtime(block, environment)
    raise ReleaseError(f"no target runs a {type(block).__name__} block (known: {_known()})")


def kind_of(type_name: str | None, environment: str) -> TargetKind:
    """The kind an environment description names with `target.type`, or what the choices are."""
    for kind in KINDS:
        if kind.type == type_name:
            return kind
    raise ReleaseError(
        f"environment '{environment}': unknown target type {type_name!r} (use one of: {_known()})"
    )


def _known() -> str:
    return ", ".join(kind.type for kind in KINDS)
