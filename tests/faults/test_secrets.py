"""After every other test of the run (`last`: it waits for them, tests/support/schedule.py), no
secret the suite used is anywhere it should not be: any table of the Prefect server's database (logs, artifacts, events and their
resources, variables such as the release records, flow and task runs with their parameters,
states and inputs, deployments, automations, workers), the results the steps stored, and the
stack's own logs (the worker's, the launcher's, the server's).

The secrets are canaries: random values `scripts/stack.sh` made for this machine (the database
passwords, the Payload secret, the AWS stand-in's secret keys), so a hit can only be a leak.
Block documents are where secrets belong; they are not searched.

The server's records are read in its database, as whole rows cast to text, rather than through
its API: the API pages by offset, which cost about 9 minutes over 300,000 records of a
long-lived stack, and shows only the fields it serves. The database has every column (none is
binary), and one pass per table takes seconds. A planted canary proves the search finds what it
looks for.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect import get_client

from testbed.scratch import stack_dir
from tests.support.matrix import MATRIX, Row

pytestmark = [pytest.mark.integration, pytest.mark.last]
NOT_SEARCHED = ("block_document", "block_document_reference")  # where secrets belong


def canaries() -> dict[str, str]:
    """Each secret the suite used, by where it comes from."""
    found = {
        "app database password": stack_dir() / "postgres" / "app-password",
        "Prefect database password": stack_dir() / "postgres" / "prefect-password",
        "Payload secret": stack_dir() / "secrets" / "payload-secret",
    }
    values = {name: path.read_text().strip() for name, path in found.items() if path.exists()}
    for variable in ("FM_STAGING_AWS_SECRET_ACCESS_KEY", "FM_PRODUCTION_AWS_SECRET_ACCESS_KEY"):
        if os.environ.get(variable):
            values[variable] = os.environ[variable]
    return values


def prefect_db(sql: str) -> list[list[str]]:
    """Rows of a query in the Prefect server's database, as its own role. The SQL goes in on
    stdin, never on a command line, since it names the canaries."""
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": os.environ.get("FM_POSTGRES_PORT", "5433"),
        "PGUSER": "prefect",
        "PGDATABASE": "prefect",
        "PGPASSWORD": (stack_dir() / "postgres" / "prefect-password").read_text().strip(),
    }
    done = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-q"],
        input=sql, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def server_hits(secrets: dict[str, str]) -> tuple[int, list[str]]:
    """(rows searched, "<secret> in <table> (<n> rows)") over every table but the blocks'."""
    tables = [row[0] for row in prefect_db(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    ) if row[0] not in NOT_SEARCHED]  # fmt: skip
    canaries = ", ".join(f"({literal(n)}, {literal(v)})" for n, v in secrets.items())
    queries = [
        f"SELECT {literal(t)}, count(*), string_agg(DISTINCT c.name, ', ') "
        f'FROM (SELECT t::text AS row FROM "{t}" t) r LEFT JOIN canaries c ON strpos(r.row, c.value) > 0'
        for t in tables
    ]
    rows = prefect_db(
        f"CREATE TEMP TABLE canaries (name text, value text); "
        f"INSERT INTO canaries VALUES {canaries}; " + " UNION ALL ".join(queries)
    )
    searched = sum(int(row[1]) for row in rows)
    hits = [f"{row[2]} in {row[0]}" for row in rows if len(row) > 2 and row[2]]
    return searched, hits


def files() -> Iterator[tuple[str, bytes]]:
    """The stack's logs and the steps' stored results (pickles: searched as bytes)."""
    for folder in (stack_dir() / "logs", Path(os.environ["PREFECT_LOCAL_STORAGE_PATH"])):
        for path in folder.rglob("*"):
            if path.is_file():
                yield str(path), path.read_bytes()


def plant(marker: str) -> None:
    """A log line holding `marker`, written through the API as a run's logger would: the search
    must find it, or a clean result proves nothing."""
    with get_client(sync_client=True) as client:
        client.create_logs(
            [{"name": "tests.faults.secrets", "level": 20, "message": f"planted {marker}",
              "timestamp": datetime.now(UTC).isoformat()}]
        )  # fmt: skip


def test_no_secret_the_suite_used_is_anywhere_outside_its_block():
    secrets = canaries()
    assert len(secrets) >= 4, f"too few secrets to look for: {sorted(secrets)}"
    marker = f"canary-{uuid.uuid4().hex}"
    plant(marker)
    searched, hits = server_hits({**secrets, "planted": marker})
    assert "planted in log" in hits, f"the search missed the planted canary: {hits}"
    hits.remove("planted in log")
    for where, data in files():
        searched += 1
        hits += [f"{name} in {where}" for name, value in secrets.items() if value.encode() in data]

    MATRIX.append(
        Row(
            fault="secrets (canaries)",
            step=f"{len(secrets)} secrets in {searched} server rows and files",
            end_state=f"{len(hits)} found",
            rows_lost=None,
            recovered_s=None,
            note="; ".join(hits[:3])
            or "every table of the server's database but the blocks'; results; stack logs",
        )
    )
    assert hits == []
