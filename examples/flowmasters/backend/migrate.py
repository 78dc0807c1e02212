"""Schema migrations for the Flow Masters backend.

usage: python3 /app/migrate.py up|down|status [--steps N | --to VERSION] [--dir DIR]

Migrations are ``migrations/NNNN_name.up.sql`` / ``NNNN_name.down.sql``. Each one runs in its own
transaction together with its schema_migrations INSERT (up) or DELETE (down), so a failure
leaves the schema at the last good version. Migration files must not contain BEGIN/COMMIT.
All applying/reverting happens in one psql session holding an advisory lock, and each step is
re-checked under the lock, so concurrent runs (e.g. two replicas starting) do not collide.

Progress goes to stderr; on success the last stdout line is JSON:
  up/down: {"applied":[..],"reverted":[..],"schema_version":N}
  status:  {"applied":[..],"available":[..],"pending":[..],"schema_version":N}
Exit status: 0 success, 1 a migration's SQL failed, 2 usage error or database unreachable.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pg
from stdlite import dumps

FILE_RE = re.compile(r"^(\d+)_([A-Za-z0-9_-]+)\.(up|down)\.sql$")
LOCK_KEY = 727_001  # arbitrary pg_advisory_lock key shared by every migrate.py run
BOOKKEEPING = """SET lock_timeout = '60s';
SELECT pg_advisory_lock({key});
RESET lock_timeout;
SET client_min_messages = warning;  -- hide "already exists, skipping"
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
RESET client_min_messages;
"""
STEP = r"""SELECT {cond} EXISTS (SELECT 1 FROM schema_migrations WHERE version = {v}) AS fm_go \gset
\if :fm_go
\echo fm:begin {v}
BEGIN;
\i {file}
{record}
COMMIT;
\echo fm:done {v}
\else
\echo fm:skip {v}
\endif
"""


class Migration(NamedTuple):
    version: int
    name: str
    up: Path | None
    down: Path | None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


class UsageError(Exception):
    """Wrong arguments, bad migration files or unreachable database: exit status 2."""


class Unavailable(UsageError):
    """The database could not be reached before anything ran: exit status 75 (EX_TEMPFAIL), which
    the pipeline retries."""


class MigrationFailed(Exception):
    """A migration's SQL failed: exit status 1."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def discover(directory: Path) -> dict[int, Migration]:
    if not directory.is_dir():
        raise UsageError(f"migrations directory {directory} does not exist")
    files: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_RE.match(path.name)
        if not match or int(match[1]) == 0:
            raise UsageError(
                f"bad migration file name {path.name}: expected NNNN_name.up.sql or "
                "NNNN_name.down.sql with NNNN >= 1"
            )
        version = int(match[1])
        if names.setdefault(version, match[2]) != match[2]:
            raise UsageError(f"migration {version} has two names: {names[version]}, {match[2]}")
        files.setdefault(version, {})[match[3]] = path
    found = {v: Migration(v, names[v], f.get("up"), f.get("down")) for v, f in files.items()}
    for migration in found.values():
        if migration.up is None:
            raise UsageError(f"{migration.label}.down.sql has no matching .up.sql in {directory}")
    return dict(sorted(found.items()))


def applied_versions() -> list[int]:
    try:
        return pg.applied_versions()
    except pg.PsqlError as exc:
        if exc.connection and str(exc) != pg.NO_PSQL:
            raise Unavailable(str(exc)) from exc
        raise UsageError(f"cannot read schema_migrations: {exc}") from exc


def psql_quote(path: Path) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_script(steps: list[Migration], up: bool) -> str:
    parts = [BOOKKEEPING.format(key=LOCK_KEY)]
    for m in steps:
        record = (
            f"INSERT INTO schema_migrations (version, name) VALUES ({m.version}, '{m.name}');"
            if up
            else f"DELETE FROM schema_migrations WHERE version = {m.version};"
        )
        file = psql_quote(m.up if up else m.down)  # type: ignore[arg-type]
        parts.append(STEP.format(cond="NOT" if up else "", v=m.version, file=file, record=record))
    return "".join(parts)


def execute(steps: list[Migration], up: bool) -> tuple[list[int], list[int]]:
    """Apply or revert ``steps`` in order in one psql session.

    Returns (done, skipped): skipped ones were found already done by a concurrent run.
    """
    try:
        proc = subprocess.Popen(
            [*pg.PSQL, "-f", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream keeps psql errors next to our markers
            encoding="utf-8",
            env=pg.psql_env(),
        )
    except FileNotFoundError as exc:
        raise UsageError(pg.NO_PSQL) from exc
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(build_script(steps, up))
    proc.stdin.close()
    by_version = {m.version: m for m in steps}
    done: list[int] = []
    skipped: list[int] = []
    current: Migration | None = None
    output: list[str] = []
    for raw in proc.stdout:
        line = pg.scrub(raw.rstrip("\n"))
        marker, _, version = line.partition(" ")
        if marker == "fm:begin":
            current = by_version[int(version)]
            log(f"{'applying' if up else 'reverting'} {current.label} ...")
        elif marker in ("fm:done", "fm:skip"):
            current = None
            (done if marker == "fm:done" else skipped).append(int(version))
            note = "ok" if marker == "fm:done" else "skipped, already done by a concurrent run:"
            log(f"  {note} {by_version[int(version)].label}")
        elif line:
            output.append(line)
            log(f"  psql: {line}")
    returncode = proc.wait()
    if returncode == 0:
        return done, skipped
    error = pg.error_from(returncode, "\n".join(output))
    if error.connection:
        if not done and str(error) != pg.NO_PSQL:
            raise Unavailable(str(error))
        raise UsageError(f"{error}\n(completed before the failure: {done})")
    if current is None:
        raise MigrationFailed(f"migration bookkeeping failed before any file ran:\n{error}")
    raise MigrationFailed(
        f"{current.label}.{'up' if up else 'down'}.sql failed and was rolled back "
        f"(completed before it in this run: {done}):\n{error}"
    )


def select_down(applied: list[int], args: argparse.Namespace) -> list[int]:
    if args.to is not None:
        return [v for v in reversed(applied) if v > args.to]
    steps = args.steps or 1
    if steps > len(applied):
        raise UsageError(
            f"cannot revert {steps} migration(s): only {len(applied)} applied {applied}"
        )
    return list(reversed(applied))[:steps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--steps", type=int, help="up: apply at most N; down: revert N (default 1)")
    limit.add_argument(
        "--to",
        type=int,
        metavar="VERSION",
        help="up: apply up to VERSION; down: revert everything above VERSION",
    )
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "migrations")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or (args.to is not None and args.to < 0):
        parser.error("--steps must be >= 1 and --to >= 0")
    try:
        available = discover(args.dir)
        applied = applied_versions()
        pending = [v for v in available if v not in applied]
        unknown = [v for v in applied if v not in available]
        if unknown:
            log(f"note: applied migrations {unknown} are not in {args.dir} (newer release?)")
        if args.command == "status":
            for v, m in available.items():
                log(f"  [{'x' if v in applied else ' '}] {m.label}")
            result = {"applied": applied, "available": list(available), "pending": pending}
            print(dumps({**result, "schema_version": max(applied, default=0)}))
            return 0
        if args.command == "up":
            todo = [v for v in pending if args.to is None or v <= args.to][: args.steps]
        else:
            todo = select_down(applied, args)
            for v in todo:
                if v not in available:
                    raise UsageError(
                        f"migration {v} is applied but not shipped in {args.dir}; "
                        "run down with the release that added it"
                    )
                if available[v].down is None:
                    label = available[v].label
                    raise UsageError(f"{label} has no {label}.down.sql; refusing to revert it")
        if not todo:
            log(f"nothing to {'apply' if args.command == 'up' else 'revert'}")
        up = args.command == "up"
        done, skipped = execute([available[v] for v in todo], up) if todo else ([], [])
        changed = {*done, *skipped}
        now = sorted({*applied, *changed}) if up else [v for v in applied if v not in changed]
        log(f"schema_version is now {max(now, default=0)}")
        result = {"applied": done if up else [], "reverted": [] if up else done}
        print(dumps({**result, "schema_version": max(now, default=0)}))
        return 0
    except Unavailable as exc:
        log(f"migrate.py {args.command}: {exc} (temporary: nothing was changed)")
        return 75
    except UsageError as exc:
        log(f"migrate.py {args.command}: {exc}")
        return 2
    except MigrationFailed as exc:
        log(f"migrate.py {args.command}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
