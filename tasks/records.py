"""The release record's storage: a Prefect Variable per environment, with its history as artifacts.

The record itself (what it holds, how a re-run continues it) is `domain.records`. The latest record
of an environment is the Variable `flowmasters-release-<environment>`; every version of it is also
a markdown artifact, so the history is in the server too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from domain.records import ReleaseRecord
from tasks.retries import RETRIES


def variable_name(environment: str) -> str:
    return f"flowmasters-release-{environment}"


@task(name="read-release-record", cache_policy=NO_CACHE, **RETRIES)
def read_release_record(environment: str) -> ReleaseRecord | None:
    value = Variable.get(variable_name(environment), default=None)
    return ReleaseRecord.model_validate(value) if value else None


@task(name="write-release-record", cache_policy=NO_CACHE, **RETRIES)
def write_release_record(record: ReleaseRecord) -> ReleaseRecord:
    """Store the record (Variable = latest; artifact = history). Holds no secret by construction."""
    record = record.model_copy(update={"updated_at": datetime.now(UTC)})
    Variable.set(variable_name(record.environment), record.model_dump(mode="json"), overwrite=True)
    create_markdown_artifact(
        key=f"release-record-{record.environment}",
        markdown=f"```json\n{record.model_dump_json(indent=2)}\n```",
        description=f"Release record {record.release_id} ({record.status})",
    )
    return record
