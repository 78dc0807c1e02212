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
