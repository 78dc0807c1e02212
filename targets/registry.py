"""Which target runs an environment: the one place that maps a target to its block and runtime.

An environment's block names its target block; `connect` turns that block into the runtime the
tasks call, once per task and without reading anything from the server. A new target is a folder
under targets/ (its blocks, runtime, SDK modules and description) and one line in `KINDS`.

A kind names its modules rather than importing them: a run imports only its own target's SDKs.
Importing every kind costs a Docker-host run about 3 s (prefect_aws alone, which imports boto3
and its ECS worker), paid again by every deployment run's new process before its first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from prefect.blocks.core import Block

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from targets.base import Target


@dataclass(frozen=True)
class TargetKind:
    """A kind of target: its `type:` in an environment description, the slug of its block, and
    the package holding its `blocks`, `runtime` and `description` modules (imported on use)."""

    type: str
    slug: str  # the target block's type slug, as the server names it in a block document
    package: str
    block_class: str
    runtime_class: str

    @property
    def block(self) -> type[Block]:
        return getattr(import_module(f"{self.package}.blocks"), self.block_class)

    @property
    def runtime(self) -> Callable[[Any, EnvironmentSpec], Target]:
        return getattr(import_module(f"{self.package}.runtime"), self.runtime_class)

    @property
    def register(self) -> Callable[[str, dict[str, Any]], Block]:
        """A description's `target:` -> its saved blocks."""
        return import_module(f"{self.package}.description").register


KINDS: tuple[TargetKind, ...] = (
    TargetKind(
        "docker-host",
        "flowmasters-docker-host-target",
        "targets.docker_host",
        "DockerHostTarget",
        "DockerHostRuntime",
    ),
    TargetKind("aws", "flowmasters-aws-target", "targets.aws", "AwsTarget", "AwsRuntime"),
)


def connect(block: Block, environment: EnvironmentSpec) -> Target:
    """The runtime of `block` for `environment`: the tasks' only way to a target."""
    return kind_of_block(type(block).get_block_type_slug()).runtime(block, environment)


def kind_of_block(slug: str) -> TargetKind:
    """The kind whose target block has type slug `slug` (its modules are imported on use)."""
    for kind in KINDS:
        if kind.slug == slug:
            return kind
    raise ReleaseError(
        f"no target runs a '{slug}' block (known: {_known()}): the environment's `target` must "
        f"be one of {', '.join(kind.slug for kind in KINDS)}; describe it again and run "
        "`python -m deployments.register`."
    )


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
