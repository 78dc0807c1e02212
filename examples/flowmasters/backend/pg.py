"""psql(1) wrapper shared by server.py and migrate.py.

The image has no Python database driver (stdlib only), so every query runs the PostgreSQL
client as a subprocess. Connection settings come from the standard PG* variables (PGHOST,
PGPORT, PGDATABASE, PGUSER, PGPASSWORD); the password is never put into a message.
"""

from __future__ import annotations

import glob
import os
import subprocess


def psql_binary() -> str:
    """The PostgreSQL client itself, not Debian's `psql`: that is pg_wrapper, a Perl script that
    picks a cluster version and then runs the client, 22 of the 35 ms of CPU a call costs
    (measured), and the load balancer's health check makes a call every check. Elsewhere (no
    /usr/lib/postgresql/<version>/bin), `psql` from PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/psql")
    newest = max(found, key=lambda path: int(path.split("/")[4]), default=None)
    return newest or "psql"


PSQL = (psql_binary(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1")
EXIT_BADCONN = 2  # psql's exit status when it cannot connect or loses the connection
NO_PSQL = "psql not found on PATH (install postgresql-client)"

APPLIED_SQL = r"""
SELECT to_regclass('schema_migrations') IS NOT NULL AS fm_has_table \gset
\if :fm_has_table
SELECT version FROM schema_migrations ORDER BY version;
\endif
"""


class PsqlError(Exception):
    """psql failed; ``connection`` is True when the server could not be reached or logged into."""

    def __init__(self, message: str, *, connection: bool) -> None:
        super().__init__(message)
        self.connection = connection


def target() -> str:
    """user@host:port/database as configured, for error messages."""
    env = os.environ
    return "{}@{}:{}/{}".format(
        env.get("PGUSER", "<PGUSER unset>"),
        env.get("PGHOST", "<PGHOST unset: local socket>"),
        env.get("PGPORT", "5432"),
        env.get("PGDATABASE", "<PGDATABASE unset>"),
    )


def scrub(text: str) -> str:
    password = os.environ.get("PGPASSWORD")
    return text.replace(password, "***") if password else text


def psql_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "3")  # a dead host must not hang health checks
    env.setdefault("PGCLIENTENCODING", "UTF8")
    env.setdefault("PGAPPNAME", "flowmasters-backend")
    return env


def error_from(returncode: int, stderr: str) -> PsqlError:
    message = scrub(stderr.strip()) or f"psql exited with status {returncode}"
    if returncode == EXIT_BADCONN:
        return PsqlError(
            f"cannot connect to PostgreSQL at {target()}: {message}\nCheck PGHOST, PGPORT, "
            "PGDATABASE, PGUSER and PGPASSWORD, and that the server is running.",
            connection=True,
        )
    return PsqlError(message, connection=False)


def run(script: str, timeout: float = 10.0) -> str:
    """Run a psql script (SQL plus backslash commands) from stdin; return its stdout."""
    try:
        proc = subprocess.run(
            [*PSQL, "-f", "-"],
            input=script,
            capture_output=True,
            encoding="utf-8",
            env=psql_env(),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PsqlError(NO_PSQL, connection=True) from exc
    except subprocess.TimeoutExpired as exc:
        raise PsqlError(
            f"psql timed out after {timeout:g}s at {target()}", connection=True
        ) from exc
    if proc.returncode:
        raise error_from(proc.returncode, proc.stderr)
    return proc.stdout


def applied_versions() -> list[int]:
    """Versions recorded in schema_migrations, ascending; [] if the table does not exist."""
    return [int(line) for line in run(APPLIED_SQL).split()]
