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
