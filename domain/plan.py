"""The release plan: what a release would do, computed before anything changes.

Shown as an artifact for a dry run, and in the approval form of a production release.
"""

from __future__ import annotations

from domain.frozen import Frozen
from domain.migrations import MigrationId


class ServicePlan(Frozen):
    service: str
    current: str
    next: str
    image: str
    to_build: bool
    kept: bool = False  # serves an image built from this source already: not built or deployed


class ReleasePlan(Frozen):
    environment: str
    version: str
    services: tuple[ServicePlan, ...]
    pending_migrations: tuple[MigrationId, ...]
    migrations_note: str
    # True when the pending list is complete: the source's declared migration folder minus what
    # the migration table (or status command) records. Only then may "none pending" skip the
    # migrate step; without a folder, "none" may only mean "unknown".
    migrations_known: bool = False

    @property
    def changes_nothing(self) -> bool:
        """Every image is kept and no migration is pending: nothing to build, push, back up,
        migrate or deploy."""
        return (
            all(s.kept for s in self.services)
            and self.migrations_known
            and not self.pending_migrations
        )


def backup_reason(plan: ReleasePlan, database_users: set[str]) -> str | None:
    """Why the release backs the database up before it changes anything, or None when nothing
    in it can change what the database holds: no migration runs, and every service that uses
    the database keeps serving the image it serves now. (The strategy: always a backup before
    migrations; a new version of a service that writes to the database gets one too.)"""
    if not (plan.migrations_known and not plan.pending_migrations):
        return "migrations may run"
    changed = sorted(s.service for s in plan.services if not s.kept and s.service in database_users)
    if changed:
        return f"{', '.join(changed)} uses the database and changes"
    return None
