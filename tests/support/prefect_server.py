"""A throwaway Prefect server for the flow tests, on PostgreSQL when the stack has one.

Why not `prefect_test_harness` alone: it runs the server on SQLite, where a transaction that
reads and then writes meets another writer as SQLITE_BUSY at once (no busy wait applies to that
case), the API answers 503, and the client waits 2 s before it tries again. The flow tier's 43
tests took 11 min on an idle machine that way (2.3 CPU-min: all of it waiting, 503s on the lock's
`increment-with-lease` and on Variable updates), against about 3 min when those collisions were
rare. On PostgreSQL they do not happen.

The database is the stack's own PostgreSQL (its app role may create databases), a new one per
server, dropped when the server stops: nothing outlives the tests. Without a stack (FM_STACK_DIR
unset or no PostgreSQL there) the harness falls back to SQLite and says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import prefect.context
from prefect.server.api.server import SubprocessASGIServer
from prefect.server.database.dependencies import temporary_database_interface
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness


def stack_postgres() -> dict[str, str] | None:
    """psql's environment for the stack's app role, or None when there is no stack here."""
    stack = os.environ.get("FM_STACK_DIR")
    port = os.environ.get("FM_POSTGRES_PORT")
    password = Path(stack or "/nonexistent") / "postgres" / "app-password"
    if not (stack and port and password.is_file()):
        return None
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": port,
        "PGUSER": "flowmasters",
        "PGDATABASE": "postgres",
        "PGPASSWORD": password.read_text().strip(),
    }


def free_port() -> int:
    """A port from the kernel's ephemeral range: never one a scratch environment takes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restore_default_server(prior: SubprocessASGIServer | None) -> None:
    if prior is None:
        SubprocessASGIServer._instances.pop(None, None)
    else:
        SubprocessASGIServer._instances[None] = prior


def psql(env: dict[str, str], sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True)


@contextmanager
def throwaway_server(startup_timeout: int = 60) -> Iterator[None]:
    """A Prefect server of its own for the duration, with PREFECT_API_URL pointing at it."""
    env = stack_postgres()
    if env is None:
        warnings.warn(
            "no stack PostgreSQL (FM_STACK_DIR/FM_POSTGRES_PORT): the flow tests' server runs "
            'on SQLite, which is several times slower; `eval "$(scripts/stack.sh --suite env)"`'
            " first",
            stacklevel=2,
        )
        with prefect_test_harness(server_startup_timeout=startup_timeout):
            yield
        return
    database = f"prefect_flows_{uuid.uuid4().hex[:12]}"
    psql(env, f"CREATE DATABASE {database}")
    url = (
        f"postgresql+asyncpg://{env['PGUSER']}:{env['PGPASSWORD']}"
        f"@127.0.0.1:{env['PGPORT']}/{database}"
    )
    try:
        with ExitStack() as stack:
            stack.enter_context(temporary_database_interface())
            stack.enter_context(temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: url}))
            server = SubprocessASGIServer(port=free_port())
            # Prefect code that asks for "the" ephemeral server during a run finds this one
            # (what prefect_test_harness does too) instead of starting a second.
            prior = SubprocessASGIServer._instances.get(None)
            SubprocessASGIServer._instances[None] = server
            stack.callback(restore_default_server, prior)
            server.start(timeout=startup_timeout)
            stack.callback(server.stop)
            stack.enter_context(temporary_settings({PREFECT_API_URL: server.api_url}))
            # Code that copied the settings context before this point sees the server too.
            stack.enter_context(
                prefect.context._temporary_global_settings_context(
                    prefect.context.get_settings_context()
                )
            )
            yield
    finally:
        psql(env, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
