"""The migration contract, for any app: what a service declares, and the rules that judge a run.

A service that owns the migrations declares the commands that apply, revert and (optionally)
report them, the image they run in (a Dockerfile stage: the migrator), and the table where the
app records what it applied. Success is the command's exit code 0 **and** the table afterwards
recording every migration that was pending: Payload's CLI can exit 0 without migrating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from domain.frozen import Frozen

MigrationId = int | str  # the stand-in numbers its migrations; Payload names them
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
STEPS = "{steps}"  # in a down command: replaced by how many migrations to revert


class MigrationTable(Frozen):
    """Where the app records its applied migrations (Payload: `payload_migrations`)."""

    name: str = Field(pattern=IDENTIFIER, description="Table name, e.g. payload_migrations.")
    name_column: str = Field(default="name", pattern=IDENTIFIER)
    batch_column: str | None = Field(default="batch", pattern=IDENTIFIER)
    dev_push_batch: int | None = Field(
        default=-1,
        description="The batch number of a development 'push' record (Payload: -1). A database "
        "holding one was changed outside the migrations: releasing over it is refused.",
    )


class MigrationSpec(Frozen):
    """How a service's migrations run. The commands run in a one-off container or task of the
    migrator image, with the database connection in the environment."""

    command: tuple[str, ...] = Field(min_length=1, description="Applies every pending migration.")
    down_command: tuple[str, ...] | None = Field(
        default=None,
        description="Reverts the latest migrations; '{steps}' in it is replaced by how many. "
        "Without '{steps}' it runs once and must revert the latest batch (Payload's migrate:down).",
    )
    status_command: tuple[str, ...] | None = Field(
        default=None, description="Reports applied and pending migrations (with output: json)."
    )
    output: Literal["json", "text"] = Field(
        default="text",
        description="json: the command prints its result as a JSON object last (the stand-in's "
        "protocol); text: only the exit code and the table count.",
    )
    image_target: str | None = Field(
        default=None,
        description="Dockerfile stage of a migrator image, built, pushed and cached with the "
        "service's image under the same version; default: the service's own image.",
    )
    repository: str | None = Field(
        default=None,
        description="The migrator image's repository; default: '<repository>-migrator'.",
    )
    table: MigrationTable | None = Field(
        default=None, description="Read after each run; what it lacks fails the release."
    )
    table_command: tuple[str, ...] | None = Field(
        default=None,
        description="Where the pipeline cannot reach the database itself (AWS: RDS in private "
        "subnets): the command, run like the others, that prints the table as one JSON line "
        'last, {"rows": [[name, batch], ...]} in order or {"rows": null} while there is no '
        "table. The table's name and its two columns are appended to it.",
    )
    folder: str | None = Field(
        default=None, description="Folder of the migration files, in the build context."
    )
    pattern: str = Field(
        default=r"^(\d{8}_\d{6}_[A-Za-z0-9_]+)\.ts$",
        description="Regular expression for a migration file's name; group 1 is its id.",
    )
    not_backward_compatible: tuple[MigrationId, ...] = Field(
        default=(),
        description="Ids of migrations the previous version cannot run on (a dropped or renamed "
        "column): a release that applies one refuses a canary, where both versions share it.",
    )

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, pattern: str) -> str:
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from exc
        if groups < 1:
            raise ValueError(f"pattern {pattern!r} needs a group: the migration's id")
        return pattern


class Applied(Frozen):
    """One row of the migration table."""

    name: MigrationId
    batch: int | None = None


def as_id(text: str) -> MigrationId:
    return int(text) if text.isdigit() else text


def available_migrations(folder: Path, pattern: str) -> tuple[MigrationId, ...]:
    """The migrations in `folder` whose file name matches `pattern`, in order."""
    if not folder.is_dir():
        return ()
    found = (re.match(pattern, p.name) for p in folder.iterdir())
    ids = {as_id(m.group(1)) for m in found if m}
    return tuple(sorted(ids, key=lambda i: (isinstance(i, str), i)))


def pending(available: Iterable[MigrationId], applied: Iterable[MigrationId]) -> tuple:
    done = set(applied)
    return tuple(m for m in available if m not in done)


def dev_push_rows(rows: Sequence[Applied], table: MigrationTable) -> list[Applied]:
    """Rows a development 'push' left (Payload: batch -1)."""
    if table.dev_push_batch is None:
        return []
    return [r for r in rows if r.batch == table.dev_push_batch]


def refuse_dev_push(rows: Sequence[Applied], table: MigrationTable, database: str) -> str | None:
    """Why a release must not migrate this database, or None."""
    pushed = dev_push_rows(rows, table)
    if not pushed:
        return None
    return (
        f"the database of environment '{database}' has a development 'push' record in "
        f"{table.name} "
        f"({', '.join(str(r.name) for r in pushed)}, batch {table.dev_push_batch}): its schema "
        "was changed outside the migrations, and Payload's CLI exits 0 without migrating over "
        f"it. Nothing was changed. Make the schema match the committed migrations, then delete "
        f"the row (DELETE FROM {table.name} WHERE {table.batch_column} = {table.dev_push_batch}), "
        "or restore a backup taken before the push; never run with push: true against it"
    )


def newly_applied(before: Sequence[Applied], after: Sequence[Applied]) -> tuple[MigrationId, ...]:
    had = {r.name for r in before}
    return tuple(r.name for r in after if r.name not in had)


def reverted(before: Sequence[Applied], after: Sequence[Applied]) -> tuple[MigrationId, ...]:
    left = {r.name for r in after}
    return tuple(r.name for r in before if r.name not in left)


def latest(rows: Sequence[Applied]) -> MigrationId | None:
    """The schema version: the last applied migration."""
    real = [r for r in rows if r.batch is None or r.batch >= 0]
    return real[-1].name if real else None


def table_command(spec: MigrationSpec) -> list[str]:
    """The table command with its arguments: the table, its name column, its batch column."""
    assert spec.table_command is not None and spec.table is not None
    table = spec.table
    return [*spec.table_command, table.name, table.name_column, table.batch_column or ""]


def table_rows(data: object) -> tuple[Applied, ...] | None:
    """The rows a table command printed (None: no table yet); ValueError when it is not the
    shape the contract names."""
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError('expected {"rows": [[name, batch], ...]} or {"rows": null}')
    rows = data["rows"]
    if rows is None:
        return None
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 2 for r in rows):
        raise ValueError(f'"rows" must be a list of [name, batch] pairs, not {rows!r:.200}')
    return tuple(
        Applied(name=as_id(str(name)), batch=None if batch is None else int(batch))
        for name, batch in rows
    )


def down_command(spec: MigrationSpec, steps: int) -> tuple[list[str], int]:
    """The down command for `steps` migrations, and how many times to run it."""
    assert spec.down_command is not None
    if any(STEPS in part for part in spec.down_command):
        return [part.replace(STEPS, str(steps)) for part in spec.down_command], 1
    return list(spec.down_command), 1
