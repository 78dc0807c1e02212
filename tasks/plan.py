"""The release plan: what a release would do, computed without changing anything.

Shown as an artifact for a dry run, and in the approval form of a production release.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.migrations import MigrationId, available_migrations, pending
from domain.plan import ReleasePlan, ServicePlan
from domain.results import BuildSpec, PushedImage, Revision
from targets.base import Target
from tasks.retries import RETRIES


def render_plan(plan: ReleasePlan) -> str:
    lines = [
        f"# Release plan: {plan.version} to {plan.environment}",
        "",
        "| service | now | next | image | build |",
        "|---|---|---|---|---|",
    ]
    for s in plan.services:
        build = "build and push" if s.to_build else "already in the registry"
        if s.kept:
            build = "kept: serves an image of this source already"
        lines.append(f"| {s.service} | {s.current} | {s.next} | `{s.image}` | {build} |")
    pending = ", ".join(str(v) for v in plan.pending_migrations) or "none"
    lines += ["", f"**Migrations pending:** {pending} ({plan.migrations_note})", ""]
    lines.append("A backup of the database is taken before the migrations.")
    return "\n".join(lines) + "\n"


@task(name="plan-release", cache_policy=NO_CACHE, timeout_seconds=300, **RETRIES)
def plan_release(
    env: Environment,
    builds: list[BuildSpec],
    live: dict[str, Revision | None],
    kept: list[PushedImage],
) -> ReleasePlan:
    """Images to build (or `kept`: served already, built from the same source), current and
    next revision per service (`live`: what each serves now), migrations pending."""
    target = env.connect()
    keeps = {k.service: k for k in kept}
    services = tuple(
        ServicePlan(
            service=build.service,
            current=_current(live, build.service),
            next=keeps[build.service].tag if build.service in keeps else build.version,
            image=keeps[build.service].reference
            if build.service in keeps
            else f"{build.repository}:{build.version}",
            to_build=build.service not in keeps
            and not target.image_exists(build.service, build.version),
            kept=build.service in keeps,
        )
        for build in builds
    )
    pending, note, known = _pending_migrations(env, target, builds, live)
    return ReleasePlan(
        environment=env.name,
        version=builds[0].version,
        services=services,
        pending_migrations=pending,
        migrations_note=note,
        migrations_known=known,
    )


def _current(live: dict[str, Revision | None], image: str) -> str:
    if image not in live:
        return "(runs migrations only)"
    running = live[image]
    return running.version if running else "nothing"


def _pending_migrations(
    env: Environment, target: Target, builds: list[BuildSpec], live: dict[str, Revision | None]
) -> tuple[tuple[MigrationId, ...], str, bool]:
    """The source's migrations the database has not applied, a note on how that was read, and
    whether the list is complete: available = the declared folder's files matching the pattern;
    applied = what the live app's migration table (or status command) reports."""
    owner = env.spec.migration_owner()
    spec = owner.migration_spec() if owner else None
    if owner is None or spec is None:
        return (), "no service owns migrations", False
    build = next(b for b in builds if b.service == owner.name)
    folder = Path(build.context_dir) / spec.folder if spec.folder else None
    available = available_migrations(folder, spec.pattern) if folder else ()
    known = folder is not None and folder.is_dir()  # a missing folder lists nothing: unknown
    running = live.get(owner.name)
    if running is None:
        note = "nothing deployed yet: every migration of the source counts as pending"
        return available, note, known
    status = target.schema_status(running.image)
    if folder is None:
        return (
            status.pending,
            f"as the app reports them; applied now: {list(status.applied)}",
            False,
        )
    applied = f"applied now: {list(status.applied) or 'none'}"
    # Where the app itself reports pending migrations, "none pending" also needs its word.
    return pending(available, status.applied), applied, known and not status.pending
