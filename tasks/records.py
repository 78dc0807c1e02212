"""The release record: written before the first change, updated after each, read by rollback.

It lives in the Prefect server as a Variable named `flowmasters-release-<environment>` (the latest
record of that environment) and every version of it is also a JSON artifact, so the history is in
the server too. A crash at any point leaves enough to roll back: what ran before for each service,
the images released, the backup and the schema version before the migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable
from pydantic import BaseModel, Field

from targets.base import Backup, PushedImage, Revision
from tasks.policy import RETRIES

Status = Literal["started", "succeeded", "failed", "checks_failed", "rolled_back"]


class ReleaseRecord(BaseModel):
    release_id: str
    environment: str
    version: str
    status: Status = "started"
    changed_environment: bool = Field(
        default=False, description="True once a step changed what the environment runs or stores."
    )
    flow_run_id: str | None = None
    started_at: datetime
    updated_at: datetime
    images: dict[str, str] = Field(description="service -> repository:tag@digest released.")
    previous: dict[str, Revision | None] = Field(description="What each service ran before.")
    schema_before: int | None = None
    schema_after: int | None = None
    migrations_applied: list[int] = Field(
        default_factory=list, description="Migrations this release applied (what `down` reverts)."
    )
    backup: Backup | None = None
    error: str | None = None


def variable_name(environment: str) -> str:
    return f"flowmasters-release-{environment}"


def image_refs(pushed: list[PushedImage]) -> dict[str, str]:
    return {p.service: f"{p.reference}@{p.digest}" for p in pushed}


def release_id(environment: str, version: str, now: datetime) -> str:
    return f"{environment}-{version}-{now.strftime('%Y%m%d%H%M%S')}"


def start_record(
    latest: ReleaseRecord | None,
    environment: str,
    version: str,
    images: dict[str, str],
    previous: dict[str, Revision | None],
    schema_before: int | None,
    now: datetime,
    flow_run_id: str | None,
) -> ReleaseRecord:
    """The record for this run. A re-run of the same release (same version and images, not rolled
    back) continues the latest record, so its backup, its cache keys and, above all, what ran
    *before* the release are kept; anything else starts a new record."""
    if (
        latest is not None
        and latest.environment == environment
        and latest.version == version
        and latest.images == images
        and latest.status != "rolled_back"
    ):
        return latest.model_copy(
            update={
                "status": "started",
                "flow_run_id": flow_run_id,
                "updated_at": now,
                "error": None,
            }
        )
    return ReleaseRecord(
        release_id=release_id(environment, version, now),
        environment=environment,
        version=version,
        flow_run_id=flow_run_id,
        started_at=now,
        updated_at=now,
        images=images,
        previous=previous,
        schema_before=schema_before,
    )


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
