"""The migration command contract, the same on every target.

The service that owns the migrations declares a command (`migrate_command`) that takes `up`,
`down --steps N` or `status` and prints its result as JSON on its last line of output. A target
only runs a command once in an image (a one-off container, an ECS task) and hands back what it
exited with and printed (`CommandRun`); what that means is decided here, once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Literal, NamedTuple, Protocol

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
from domain.results import MigrationResult, SchemaStatus
from domain.services import ServiceSpec

Direction = Literal["up", "down"]


class CommandRun(NamedTuple):
    """What a one-off run of a command left: its exit code (None: it never ran) and output."""

    exit_code: int | None
    stdout: tuple[str, ...]
    stderr: tuple[str, ...] = ()  # empty where the target cannot tell them apart (ECS logs)
    why: str = ""  # why it stopped, where the target knows (ECS stop codes)


class RunOnce(Protocol):
    """How a target runs `command` once in `image`, for the migration owner `owner`."""

    def __call__(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun: ...


def arguments(direction: Direction | Literal["status"], steps: int = 1) -> list[str]:
    return [direction, "--steps", str(steps)] if direction == "down" else [direction]


def result_line(lines: list[str] | tuple[str, ...]) -> dict[str, Any] | None:
    """The JSON object a command prints last, or None (the last non-blank line is not one)."""
    for line in reversed([x.strip() for x in lines if x.strip()]):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def run(env: EnvironmentSpec, run_once: RunOnce, image: str, args: list[str]) -> dict[str, Any]:
    """Run the owner's migrate command with `args` in `image`; its JSON result, or a ReleaseError
    that says what failed and that nothing after this step ran."""
    owner = env.migration_owner()
    if owner is None:
        raise ReleaseError(f"environment '{env.name}' has no service that owns migrations")
    command = [*owner.migrate_command, *args]
    done = run_once(owner, image, command)
    if done.exit_code != 0:
        exited = done.exit_code if done.exit_code is not None else "without running"
        why = f" ({done.why})" if done.why else ""
        tail = "\n".join(done.stderr or done.stdout)[-2000:]
        raise ReleaseError(
            f"`{' '.join(args)}` migrations in {image} exited {exited}{why}; nothing after this "
            f"step ran and the previous version keeps serving. Its output:\n{tail.strip()}"
        )
    data = result_line(done.stdout)
    if data is None:
        raise ReleaseError(
            f"`{' '.join(command)}` in {image} printed no JSON result line (the migrate command "
            f"must print its result as JSON last); its last lines: {list(done.stdout[-3:])!r}"
        )
    return data


def read_status(env: EnvironmentSpec, run_once: RunOnce, image: str) -> SchemaStatus:
    """Applied, available and pending migrations, as `image` sees them."""
    data = run(env, run_once, image, arguments("status"))
    return SchemaStatus(
        applied=tuple(data["applied"]),
        available=tuple(data["available"]),
        pending=tuple(data["pending"]),
        schema_version=data["schema_version"],
    )


def migrate(
    env: EnvironmentSpec, run_once: RunOnce, image: str, direction: Direction, steps: int = 1
) -> MigrationResult:
    """Apply the pending migrations (`up`) or revert the latest `steps` (`down`) with `image`."""
    data = run(env, run_once, image, arguments(direction, steps))
    applied, reverted = tuple(data.get("applied", ())), tuple(data.get("reverted", ()))
    return MigrationResult(
        direction=direction,
        applied=applied,
        reverted=reverted,
        schema_version=data["schema_version"],
        changed=bool(applied or reverted),
    )


class OneOffMigrations(ABC):
    """A runtime's migration steps, given how it runs a command once (`_run_once`): the same
    `schema_status` and `migrate` on every target."""

    env: EnvironmentSpec

    @abstractmethod
    def _run_once(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun: ...

    def schema_status(self, image: str) -> SchemaStatus:
        return read_status(self.env, self._run_once, image)

    def migrate(self, image: str, direction: Direction, steps: int = 1) -> MigrationResult:
        return migrate(self.env, self._run_once, image, direction, steps)
