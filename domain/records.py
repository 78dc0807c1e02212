"""The release record: what a release changed, and what a rollback decides from it.

Written before the first change and updated after each, so a crash at any point leaves enough to
roll back: what ran before for each service, the images released, the backup and the schema
version before the migrations. Where it is stored is the tasks' business (tasks/records.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.migrations import MigrationId
from domain.results import Backup, BuildSpec, PushedImage, Revision

Status = Literal["started", "succeeded", "failed", "checks_failed", "rolled_back"]


class Built(BaseModel):
    """An image a release built: its source key (BuildSpec.source_key), and its reference."""

    key: str
    image: str = Field(description="repository:tag@digest")


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
    sources: dict[str, Built] = Field(
        default_factory=dict,
        description="`<image>:<version>` -> what it was built from and where it is: this "
        "release's images and those that served before it (see `known_sources`).",
    )
    previous: dict[str, Revision | None] = Field(description="What each service ran before.")
    schema_before: MigrationId | None = None
    schema_after: MigrationId | None = None
    migrations_applied: list[MigrationId] = Field(
        default_factory=list, description="Migrations this release applied (what `down` reverts)."
    )
    backup: Backup | None = None
    error: str | None = None
    switched_back: bool = Field(
        default=False,
        description="The release failed and undid its own switch: every service serves what it "
        "served before (read back after the undo).",
    )
    lock_lease: str | None = Field(
        default=None,
        description="The id of the environment lock's lease the release run holds: a rollback "
        "frees it at once when the run has ended (its process cannot).",
    )


def image_refs(pushed: list[PushedImage]) -> dict[str, str]:
    return {p.service: f"{p.reference}@{p.digest}" for p in pushed}


def without_digest(reference: str) -> str:
    return reference.partition("@")[0]


def source_name(image: str, version: str) -> str:
    """How `ReleaseRecord.sources` names an image at a version: `backend-migrator:v2`."""
    return f"{image}:{version}"


def kept_images(
    builds: list[BuildSpec],
    owners: dict[str, str],
    live: dict[str, Revision | None],
    latest: ReleaseRecord | None,
) -> list[PushedImage]:
    """The images this release keeps instead of building: every image of each service whose
    live version's images (its own and its migrator) were built from the source key they would
    be built from now, as the latest record knows them. `owners` maps an image's name to its
    service's. Such a service is neither built, pushed nor deployed; it keeps its version."""
    if latest is None:
        return []
    by_service: dict[str, list[BuildSpec]] = {}
    for build in builds:
        by_service.setdefault(owners[build.service], []).append(build)
    kept: list[PushedImage] = []
    for service, images in by_service.items():
        running = live.get(service)
        if running is None:
            continue
        known = {
            b.service: latest.sources.get(source_name(b.service, running.version)) for b in images
        }
        if any(
            k is None or k.key != b.source_key for b, k in zip(images, known.values(), strict=True)
        ):
            continue
        if without_digest(known[service].image) != without_digest(running.image):
            continue  # the version's name was reused for another image: trust nothing
        kept += [kept_image(name, k.image) for name, k in known.items() if k is not None]
    return kept


def known_sources(
    latest: ReleaseRecord | None,
    owners: dict[str, str],
    live: dict[str, Revision | None],
    released: dict[str, Built],
) -> dict[str, Built]:
    """A new record's `sources`: this release's images (`released`), and what the latest record
    knew of the images serving now, so a release that fails and switches back, or is rolled
    back, still tells the next one what those were built from."""
    serving = {
        source_name(image, running.version)
        for image, service in owners.items()
        if (running := live.get(service)) is not None
    }
    inherited = {n: b for n, b in (latest.sources if latest else {}).items() if n in serving}
    return {**inherited, **released}


def kept_but_moved(
    kept: list[PushedImage],
    owners: dict[str, str],
    planned: dict[str, Revision | None],
    now: dict[str, Revision | None],
) -> list[str]:
    """Kept services that no longer serve what the plan saw (another release or rollback ran
    in between): keeping them would leave them on a revision nobody planned."""
    moved = []
    for service in sorted({owners[k.service] for k in kept}):
        before, after = planned.get(service), now.get(service)
        if switched(before, after):
            serving = after.version if after else "nothing"
            moved.append(f"{service} serves {serving}, not {before.version if before else '?'}")
    return moved


def kept_image(name: str, recorded: str) -> PushedImage:
    """A recorded `repository:tag@digest` as the image a release keeps."""
    reference, _, digest = recorded.partition("@")
    repository, _, tag = reference.rpartition(":")
    return PushedImage(
        service=name,
        repository=repository,
        tag=tag,
        digest=digest,
        image_id="",
        pushed=False,
        kept=True,
    )


def release_id(environment: str, version: str, now: datetime) -> str:
    return f"{environment}-{version}-{now.strftime('%Y%m%d%H%M%S')}"


def start_record(
    latest: ReleaseRecord | None,
    environment: str,
    version: str,
    images: dict[str, str],
    previous: dict[str, Revision | None],
    schema_before: MigrationId | None,
    now: datetime,
    flow_run_id: str | None,
    sources: dict[str, Built] | None = None,
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
                "switched_back": False,
                "sources": sources or latest.sources,
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
        sources=sources or {},
        previous=previous,
        schema_before=schema_before,
    )


def switched(before: Revision | None, now: Revision | None) -> bool:
    """Does a service serve something other than what it served `before` (None: it ran nothing
    then, so there is nothing to go back to, and nothing counts as switched)?"""
    return before is not None and (now is None or now.image_id != before.image_id)


def not_serving_previous(
    previous: dict[str, Revision | None], live: dict[str, Revision | None]
) -> list[str]:
    """Services that do not serve the image they served before the release, one line each (a
    service that ran nothing before is left out: there is nothing to go back to)."""
    wrong = []
    for name, before in previous.items():
        now = live.get(name)
        if switched(before, now):
            serving = now.version if now is not None else "nothing"
            wrong.append(f"{name} serves {serving}, not {before.version}")
    return wrong


def rollback_targets(
    record: ReleaseRecord, to_version: str | None, services: list[str]
) -> dict[str, str | None]:
    """service -> the version to return to (None: nothing ran before, leave it as it is)."""
    if to_version:
        return dict.fromkeys(services, to_version)
    return {
        name: (record.previous[name].version if record.previous.get(name) else None)
        for name in services
    }


def why_nothing_to_do(
    record: ReleaseRecord | None,
    release_id: str | None,
    to_version: str | None = None,
    crashed_run: str | None = None,
) -> str | None:
    """Why a rollback has nothing to undo; None when it should go ahead. With `to_version` the
    person named where to go, so only an already rolled-back record stops it. `crashed_run`: the
    release run whose crash started this rollback (`prefect.flow-run.<id>` or the id); the
    latest record must be that run's, else the run crashed before it recorded anything, and the
    record is an earlier release's, which must not be undone."""
    if not to_version:
        if record is None:
            return "no release was recorded for this environment"
        crashed = (crashed_run or "").removeprefix("prefect.flow-run.")
        if crashed and record.flow_run_id != crashed:
            return (
                f"the crashed release run {crashed} had recorded nothing (the latest record, "
                f"{record.release_id}, is another run's): it changed nothing"
            )
        if release_id and record.release_id != release_id:
            return (
                f"release {release_id} is no longer the latest ({record.release_id} is): "
                "not rolling back over a newer release"
            )
        if not record.changed_environment:
            if record.status == "succeeded":
                return f"release {record.release_id} changed nothing: it found every service on its version"
            return f"release {record.release_id} failed before it changed anything"
    if record is not None and record.status == "rolled_back":
        return f"release {record.release_id} was already rolled back"
    return None
