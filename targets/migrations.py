"""The migration contract, run the same way on every target.

A target only knows how to run a command once in an image (a one-off container, an ECS task) and
hands back what it exited with and printed (`CommandRun`), and how to read the app's migration
table, where it can reach the database (`Rows`). What that means is decided here, once:

- success is exit code 0 **and**, where the table is readable, every migration that was pending
  recorded in it afterwards (Payload's CLI can exit 0 without migrating);
- a database with a development 'push' record is refused before anything runs;
- the stand-in's JSON result line is read when the service declares `output: json`;
- exit code 75 (EX_TEMPFAIL, sysexits.h) means "a temporary failure, nothing was changed" (the
  database was unreachable): the step is retried with backoff. Any other failure is final,
  because a migration that failed half way must not run again blindly.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol

from domain import migrations as rules
from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError, TransientError
from domain.migrations import Applied, MigrationId, MigrationSpec, MigrationTable
from domain.results import MigrationResult, SchemaStatus
from domain.services import ServiceSpec

Direction = Literal["up", "down"]
EX_TEMPFAIL = 75


class CommandRun(NamedTuple):
    """What a one-off run of a command left: its exit code (None: it never ran) and output."""

    exit_code: int | None
    stdout: tuple[str, ...]
    stderr: tuple[str, ...] = ()  # empty where the target cannot tell them apart (ECS logs)
    why: str = ""  # why it stopped, where the target knows (ECS stop codes)


class RunOnce(Protocol):
    """How a target runs `command` once in `image`, for the migration owner `owner`."""

    def __call__(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun: ...


class ReadTable(Protocol):
    """The rows of the migration table (empty: no table yet), or None: not readable here.
    `image` is the one the migration commands run in, for a target that reads the table
    through the app's table command."""

    def __call__(self, table: MigrationTable, image: str) -> tuple[Applied, ...] | None: ...


def result_line(lines: list[str] | tuple[str, ...]) -> dict[str, Any] | None:
    """The JSON object a command prints last, or None (the last non-blank line is not one)."""
    for line in reversed([x.strip() for x in lines if x.strip()]):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def owner_of(env: EnvironmentSpec) -> tuple[ServiceSpec, MigrationSpec]:
    owner = env.migration_owner()
    spec = owner.migration_spec() if owner else None
    if owner is None or spec is None:
        raise ReleaseError(f"environment '{env.name}' has no service that owns migrations")
    return owner, spec


def run(
    env: EnvironmentSpec, run_once: RunOnce, image: str, command: Sequence[str]
) -> dict[str, Any] | None:
    """Run `command` in `image`; its JSON result (output: json), None (output: text), or a
    ReleaseError that says what failed and that nothing after this step ran."""
    owner, spec = owner_of(env)
    done = run_once(owner, image, list(command))
    shown = " ".join(command)
    if done.exit_code != 0:
        exited = done.exit_code if done.exit_code is not None else "without running"
        why = f" ({done.why})" if done.why else ""
        tail = "\n".join(done.stderr or done.stdout)[-2000:]
        if done.exit_code == EX_TEMPFAIL:
            raise TransientError(
                f"`{shown}` in {image} exited {EX_TEMPFAIL} (temporary failure: it changed "
                f"nothing); it is retried. Its output:\n{tail.strip()}"
            )
        raise ReleaseError(
            f"`{shown}` in {image} exited {exited}{why}; nothing after this step ran and the "
            f"previous version keeps serving. Its output:\n{tail.strip()}"
        )
    if spec.output != "json":
        return None
    data = result_line(done.stdout)
    if data is None:
        raise ReleaseError(
            f"`{shown}` in {image} printed no JSON result line (the service declares output: "
            f"json, so its command must print its result as JSON last); its last lines: "
            f"{list(done.stdout[-3:])!r}"
        )
    return data


def read_status(
    env: EnvironmentSpec, run_once: RunOnce, read_table: ReadTable, image: str
) -> SchemaStatus:
    """Applied migrations and the schema version: from the table where it is readable, else from
    the status command's JSON; `available`/`pending` only where the status command reports them."""
    _, spec = owner_of(env)
    rows = read_table(spec.table, image) if spec.table else None
    if spec.table and rows is not None:
        if why := rules.refuse_dev_push(rows, spec.table, env.name):
            raise ReleaseError(why)  # at the plan, before anything is built or changed
        applied = tuple(r.name for r in rows)
        return SchemaStatus(
            applied=applied, available=(), pending=(), schema_version=rules.latest(rows)
        )
    if spec.status_command and spec.output == "json":
        data = run(env, run_once, image, spec.status_command) or {}
        return SchemaStatus(
            applied=tuple(data.get("applied", ())),
            available=tuple(data.get("available", ())),
            pending=tuple(data.get("pending", ())),
            schema_version=data.get("schema_version"),
        )
    return SchemaStatus(applied=(), available=(), pending=(), schema_version=None)


def migrate(
    env: EnvironmentSpec,
    run_once: RunOnce,
    read_table: ReadTable,
    image: str,
    direction: Direction,
    steps: int = 1,
    expected: Sequence[MigrationId] = (),
) -> MigrationResult:
    """Apply the pending migrations (`up`: `expected` must be recorded afterwards) or revert the
    latest `steps` (`down`: `expected` must be gone afterwards) with `image`, judging the run by
    the table where it is readable."""
    _, spec = owner_of(env)
    table = spec.table
    before = read_table(table, image) if table else None
    if table and before is not None and (why := rules.refuse_dev_push(before, table, env.name)):
        raise ReleaseError(why)
    if direction == "up":
        data = run(env, run_once, image, spec.command)
    else:
        if spec.down_command is None:
            raise ReleaseError(
                f"the migration owner of '{env.name}' declares no down_command: the migrations "
                "cannot be reverted; roll back without migrate_down, or restore the backup"
            )
        command, _ = rules.down_command(spec, steps)
        data = run(env, run_once, image, command)
    after = read_table(table, image) if table else None
    if table is None or before is None or after is None:
        return _from_json(direction, data)
    return _judged(env.name, image, direction, table, before, after, expected)


def read_by_command(env: EnvironmentSpec, run_once: RunOnce, image: str) -> tuple[Applied, ...]:
    """The migration table as the app's table command prints it, run in `image` (empty: no
    table yet): how a target that cannot reach the database reads it."""
    owner, spec = owner_of(env)
    command = rules.table_command(spec)
    done = run_once(owner, image, command)
    shown = " ".join(command)
    if done.exit_code != 0:
        tail = "\n".join(done.stderr or done.stdout)[-1000:].strip()
        raise ReleaseError(
            f"reading the migration table with `{shown}` in {image} failed (exit "
            f"{done.exit_code}{f', {done.why}' if done.why else ''}); nothing was changed. "
            f"Its output:\n{tail}"
        )
    try:
        rows = rules.table_rows(result_line(done.stdout))
    except ValueError as exc:
        raise ReleaseError(
            f"`{shown}` in {image} did not print the migration table as the table_command "
            f"contract says ({exc}); its last lines: {list(done.stdout[-3:])!r}"
        ) from exc
    return rows or ()


def _from_json(direction: Direction, data: dict[str, Any] | None) -> MigrationResult:
    """Where the table cannot be read: what the command reported (output: json), else nothing
    beyond its exit code."""
    data = data or {}
    applied, reverted = tuple(data.get("applied", ())), tuple(data.get("reverted", ()))
    return MigrationResult(
        direction=direction,
        applied=applied,
        reverted=reverted,
        schema_version=data.get("schema_version"),
        changed=bool(applied or reverted),
    )


def _judged(
    environment: str,
    image: str,
    direction: Direction,
    table: MigrationTable,
    before: tuple[Applied, ...],
    after: tuple[Applied, ...],
    expected: Sequence[MigrationId],
) -> MigrationResult:
    recorded = {r.name for r in after}
    if direction == "up":
        missing = [m for m in expected if m not in recorded]
        if missing:
            raise ReleaseError(
                f"the migrations in {image} exited 0, but {table.name} does not record "
                f"{missing}: they did not run (Payload's CLI is known to exit 0 without "
                f"migrating). The previous version keeps serving; run the migrate command by "
                f"hand against a copy of {environment}'s database to see why"
            )
        applied = rules.newly_applied(before, after)
        return MigrationResult(
            direction="up",
            applied=applied,
            schema_version=rules.latest(after),
            changed=bool(applied),
        )
    still = [m for m in expected if m in recorded]
    if still:
        raise ReleaseError(
            f"the down migrations in {image} exited 0, but {table.name} still records {still}: "
            f"they were not reverted. The services already run the earlier version; revert them "
            f"by hand against {environment}'s database, or restore the release's backup"
        )
    gone = rules.reverted(before, after)
    return MigrationResult(
        direction="down", reverted=gone, schema_version=rules.latest(after), changed=bool(gone)
    )


class OneOffMigrations(ABC):
    """A runtime's migration steps, given how it runs a command once (`_run_once`) and reads the
    migration table (`_read_table`): the same `schema_status` and `migrate` on every target."""

    env: EnvironmentSpec

    @abstractmethod
    def _run_once(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun: ...

    @abstractmethod
    def _read_table(self, table: MigrationTable, image: str) -> tuple[Applied, ...] | None: ...

    def schema_status(self, image: str) -> SchemaStatus:
        return read_status(self.env, self._run_once, self._read_table, image)

    def migrate(
        self,
        image: str,
        direction: Direction,
        steps: int = 1,
        expected: Sequence[MigrationId] = (),
    ) -> MigrationResult:
        return migrate(
            self.env, self._run_once, self._read_table, image, direction, steps, expected
        )
