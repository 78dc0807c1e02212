"""After the matrix (this module sorts last in its tier), no secret the suite used is anywhere it
should not be: the Prefect server's logs, artifacts, events, variables (the release records),
flow-run parameters, the results the steps stored, and the stack's own logs (the worker's, the
launcher's, the server's).

The secrets are canaries: random values `scripts/stack.sh` made for this machine (the database
passwords, the Payload secret, the AWS stand-in's secret keys), so a hit can only be a leak.
Block documents are where secrets belong; they are not searched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.conftest import MATRIX, Row
from tests.support.scratch import stack_dir

pytestmark = pytest.mark.integration
PAGE = 200


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


def paged(client: httpx.Client, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = client.post(path, json={**body, "limit": PAGE, "offset": offset}).json()
        yield from page
        if len(page) < PAGE:
            return
        offset += len(page)


def events(client: httpx.Client) -> Iterator[dict[str, Any]]:
    answer = client.post("/events/filter", json={"limit": 50}).json()
    while True:
        yield from answer.get("events", [])
        next_page = answer.get("next_page")
        if not next_page:
            return
        answer = client.get(next_page).json()


def server_texts() -> Iterator[tuple[str, str]]:
    """(where, text) for everything the Prefect server holds that a leak could reach."""
    with httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=60) as client:
        for log in paged(client, "/logs/filter", {"sort": "TIMESTAMP_ASC"}):
            yield "log line", log["message"]
        for artifact in paged(client, "/artifacts/filter", {}):
            yield f"artifact {artifact.get('key')}", str(artifact.get("data"))
        for variable in paged(client, "/variables/filter", {}):
            yield f"variable {variable['name']}", str(variable.get("value"))
        for run in paged(client, "/flow_runs/filter", {}):
            yield f"flow run {run['name']} parameters", str(run.get("parameters"))
            yield f"flow run {run['name']} state", str(run.get("state"))
        for run in paged(client, "/task_runs/filter", {}):
            yield f"task run {run['name']}", str(run.get("task_inputs")) + str(run.get("state"))
        for event in events(client):
            yield f"event {event.get('event')}", str(event)


def files() -> Iterator[tuple[str, bytes]]:
    """The stack's logs and the steps' stored results (pickles: searched as bytes)."""
    for folder in (stack_dir() / "logs", Path(os.environ["PREFECT_LOCAL_STORAGE_PATH"])):
        for path in folder.rglob("*"):
            if path.is_file():
                yield str(path), path.read_bytes()


def test_no_secret_the_suite_used_is_anywhere_outside_its_block():
    secrets = canaries()
    assert len(secrets) >= 4, f"too few secrets to look for: {sorted(secrets)}"
    hits: list[str] = []
    searched = 0
    for where, text in server_texts():
        searched += 1
        hits += [f"{name} in {where}" for name, value in secrets.items() if value in text]
    for where, data in files():
        searched += 1
        hits += [f"{name} in {where}" for name, value in secrets.items() if value.encode() in data]

    MATRIX.append(
        Row(
            fault="secrets (canaries)",
            step=f"{len(secrets)} secrets in {searched} server records and files",
            end_state=f"{len(hits)} found",
            rows_lost=None,
            recovered_s=None,
            note="; ".join(hits[:3]) or "logs, artifacts, events, variables, runs, results",
        )
    )
    assert hits == []
