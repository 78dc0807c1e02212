"""The release plan: what a release would do, computed without changing anything.

Shown as an artifact for a dry run, and in the approval form of a production release.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.plan import ReleasePlan, ServicePlan
from domain.results import BuildSpec, Revision
from targets.base import Target
from tasks.retries import RETRIES

MIGRATION_FILE = re.compile(r"^(\d+)_[^.]+\.up\.sql$")


def available_migrations(folder: Path) -> tuple[int, ...]:
    if not folder.is_dir():
        return ()
    found = (MIGRATION_FILE.match(p.name) for p in folder.iterdir())
    return tuple(sorted(int(m.group(1)) for m in found if m))


def render_plan(plan: ReleasePlan) -> str:
    lines = [
        f"# Release plan: {plan.version} to {plan.environment}",
        "",
        "| service | now | next | image | build |",
        "|---|---|---|---|---|",
    ]
    for s in plan.services:
        build = "build and push" if s.to_build else "already in the registry"
        lines.append(f"| {s.service} | {s.current} | {s.next} | `{s.image}` | {build} |")
    pending = ", ".join(str(v) for v in plan.pending_migrations) or "none"
    lines += ["", f"**Migrations pending:** {pending} ({plan.migrations_note})", ""]
    lines.append("A backup of the database is taken before the migrations.")
    return "\n".join(lines) + "\n"


@task(name="plan-release", cache_policy=NO_CACHE, timeout_seconds=300, **RETRIES)
def plan_release(env: Environment, builds: list[BuildSpec]) -> ReleasePlan:
    """Images to build, current and next revision per service, migrations pending."""
    target = env.connect()
    live = {build.service: target.live_revision(build.service) for build in builds}
    services = tuple(
        ServicePlan(
            service=build.service,
            current=live[build.service].version if live[build.service] else "nothing",
            next=build.version,
            image=f"{build.repository}:{build.version}",
            to_build=not target.image_exists(build.service, build.version),
        )
        for build in builds
    )
    pending, note = _pending_migrations(env, target, builds, live)
    return ReleasePlan(
        environment=env.name,
        version=builds[0].version,
        services=services,
        pending_migrations=pending,
        migrations_note=note,
    )


def _pending_migrations(
    env: Environment, target: Target, builds: list[BuildSpec], live: dict[str, Revision | None]
) -> tuple[tuple[int, ...], str]:
    """The source's migrations the database has not applied, and a note on how that was read."""
    owner = env.spec.migration_owner()
    if owner is None:
        return (), "no service owns migrations"
    build = next(b for b in builds if b.service == owner.name)
    available = available_migrations(Path(build.context_dir) / owner.migrations_dir)
    running = live.get(owner.name)
    if running is None:
        return available, "nothing deployed yet: every migration of the source counts as pending"
    applied = set(target.schema_status(running.image).applied)
    pending = tuple(v for v in available if v not in applied)
    return pending, f"applied now: {sorted(applied) or 'none'}"
