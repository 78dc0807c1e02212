"""The app database on the Docker host, reached with the PostgreSQL client tools.

The password travels in the child process's environment (PGPASSWORD), never on a command line or
in a log line. Each session names itself (PGAPPNAME `flowmasters-<purpose>`), so an operator
sees in pg_stat_activity which step of a release holds a connection.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from domain.errors import ReleaseError, TransientError
from domain.migrations import Applied, MigrationTable, as_id
from targets.docker_host.blocks import PostgresConnection

NO_SPACE = "No space left on device"  # what pg_dump says when its output's disk is full


def client_env(conn: PostgresConnection, purpose: str) -> dict[str, str]:
    return {**os.environ, **conn.libpq_env(), "PGAPPNAME": f"flowmasters-{purpose}"}


def _run(
    conn: PostgresConnection, argv: list[str], timeout: float, purpose: str
) -> subprocess.CompletedProcess:
    env = client_env(conn, purpose)
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise ReleaseError(
            f"{argv[0]} is not installed on this host: `apt-get install postgresql-client`"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"{argv[0]} against {conn.describe()} timed out") from exc


def check_database(conn: PostgresConnection) -> str:
    """Connect and return the server version, or explain what is missing."""
    result = _run(conn, ["psql", "-X", "-A", "-t", "-c", "SHOW server_version"], 15, "verify")
    if result.returncode == 0:
        return result.stdout.strip()
    error = result.stderr.strip()
    if "does not exist" in error and "database" in error:
        raise ReleaseError(
            f"database '{conn.database}' does not exist on {conn.host}:{conn.port}: create it "
            f"(`scripts/stack.sh up` creates flowmasters_local) or fix the environment's block"
        )
    if "password authentication failed" in error:
        raise ReleaseError(
            f"{conn.describe()} rejected the password of the environment's database block: "
            "re-run `python -m deployments.register` to store the current one"
        )
    raise TransientError(
        f"database {conn.describe()} is unreachable ({error.splitlines()[-1] if error else 'no detail'}); "
        "start it with `scripts/stack.sh up`"
    )


def dump(conn: PostgresConnection, path: Path) -> tuple[int, bool]:
    """pg_dump in custom format to `path`, then prove it readable; returns its TOC entry count
    and whether it was taken now. A readable dump already at `path` is the release's backup,
    taken before its migrations: it is kept, never replaced by one taken later."""
    if path.is_file() and (kept := _entries(path))[0] is not None:
        return kept[0], False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    result = _run(conn, ["pg_dump", "-Fc", "--no-owner", "-f", str(partial)], 1800, "backup")
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        if NO_SPACE in result.stderr:
            raise ReleaseError(
                f"the backup folder {path.parent} is full: pg_dump of {conn.describe()} could "
                f"not write the backup ({NO_SPACE}). Free space there, or set the target's "
                "backup_dir to a larger disk; nothing was changed (the migrations did not run)"
            )
        raise TransientError(f"pg_dump of {conn.describe()} failed: {result.stderr.strip()}")
    os.chmod(partial, 0o600)
    entries, error = _entries(partial)
    if entries is None:
        partial.unlink(missing_ok=True)
        raise TransientError(f"the dump of {conn.describe()} is unreadable: {error}")
    os.replace(partial, path)
    return entries, True


def _entries(path: Path) -> tuple[int | None, str]:
    """How many entries pg_restore lists in a dump (None when it cannot read it), and why not."""
    listing = subprocess.run(
        ["pg_restore", "--list", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        return None, listing.stderr.strip()
    return sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";")), ""


def restore(conn: PostgresConnection, path: Path) -> None:
    """Restore a dump over the database (drops and recreates the objects it contains)."""
    if not path.exists():
        raise ReleaseError(f"backup {path} does not exist")
    result = _run(
        conn,
        ["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", conn.database, str(path)],
        1800,
        "restore",
    )
    if result.returncode != 0:
        raise ReleaseError(f"restoring {path} into {conn.describe()} failed: {result.stderr}")


def read_migration_table(conn: PostgresConnection, table: MigrationTable) -> tuple[Applied, ...]:
    """The rows of the app's migration table, in order (empty: no such table yet). The names are
    checked identifiers (domain.migrations.IDENTIFIER) and quoted."""
    name = f'"{table.name_column}"'
    batch = f'"{table.batch_column}"' if table.batch_column else None
    columns = f"{name}, {batch}" if batch else f"{name}, NULL"
    order = f"{batch}, {name}" if batch else name
    sql = (
        f"SELECT to_regclass('\"{table.name}\"') IS NOT NULL AS fm_has \\gset\n"
        f"\\if :fm_has\n"
        f'SELECT {columns} FROM "{table.name}" ORDER BY {order};\n'
        f"\\endif\n"
    )
    argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    env = client_env(conn, "migration-table")
    try:
        result = subprocess.run(
            argv, input=sql, env=env, capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"reading {table.name} on {conn.describe()} timed out") from exc
    if result.returncode != 0:
        raise TransientError(
            f"reading {table.name} on {conn.describe()} failed: {result.stderr.strip()[-300:]}"
        )
    rows = []
    for line in result.stdout.splitlines():
        if not line.strip():
            continue
        name, _, batch_text = line.partition("\t")
        batch_value = int(batch_text) if batch_text.strip().lstrip("-").isdigit() else None
        rows.append(Applied(name=as_id(name), batch=batch_value))
    return tuple(rows)
