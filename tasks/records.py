"""The release record's storage: a Prefect Variable per environment, with its history as artifacts.

The record itself (what it holds, how a re-run continues it) is `domain.records`. The latest record
of an environment is the Variable `flowmasters-release-<environment>`; every version of it is also
a markdown artifact, so the history is in the server too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from domain.errors import TransientError
from domain.records import ReleaseRecord
from tasks.retries import RETRIES


def variable_name(environment: str) -> str:
    return f"flowmasters-release-{environment}"


@contextmanager
def prefect_api(doing: str) -> Iterator[None]:
    """A server error or a dropped connection of the Prefect API (after its client's own retries
    of 429/502/503) is transient: the step retries it, and the message names the server."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code < 500:
            raise
        raise TransientError(
            f"the Prefect API answered {exc.response.status_code} while {doing}; if it keeps "
            "failing, check the Prefect server (`scripts/stack.sh status`, its log)"
        ) from exc
    except httpx.TransportError as exc:
        raise TransientError(
            f"the Prefect API was unreachable while {doing} ({type(exc).__name__}); if it keeps "
            "failing, check the Prefect server (`scripts/stack.sh status`, its log)"
        ) from exc


@task(name="read-release-record", cache_policy=NO_CACHE, **RETRIES)
def read_release_record(environment: str) -> ReleaseRecord | None:
    with prefect_api(f"reading the release record of '{environment}'"):
        value = Variable.get(variable_name(environment), default=None)
    return ReleaseRecord.model_validate(value) if value else None


@task(name="write-release-record", cache_policy=NO_CACHE, **RETRIES)
def write_release_record(record: ReleaseRecord) -> ReleaseRecord:
    """Store the record (Variable = latest; artifact = history). Holds no secret by construction."""
    record = record.model_copy(update={"updated_at": datetime.now(UTC)})
    with prefect_api(f"writing the release record of '{record.environment}'"):
        Variable.set(
            variable_name(record.environment), record.model_dump(mode="json"), overwrite=True
        )
        create_markdown_artifact(
            key=f"release-record-{record.environment}",
            markdown=f"```json\n{record.model_dump_json(indent=2)}\n```",
            description=f"Release record {record.release_id} ({record.status})",
        )
    return record
