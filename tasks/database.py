"""Step 4: back up the database, then migrate it with the new backend image."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.migrations import MigrationId
from domain.results import Backup, MigrationResult, SchemaStatus
from tasks.caching import STEP_CACHE
from tasks.retries import RETRIES


@task(name="read-schema", cache_policy=NO_CACHE, timeout_seconds=300, **RETRIES)
def read_schema(env: Environment, image: str) -> SchemaStatus:
    """Applied, available and pending migrations, as the new image sees them."""
    return env.connect().schema_status(image)


@task(name="backup-database", cache_policy=STEP_CACHE, timeout_seconds=3600, **RETRIES)
def backup_database(env: Environment, backup_id: str) -> Backup:
    """A real, readable dump kept under the release id; one per release (a re-run reuses it)."""
    return env.connect().backup_database(backup_id)


@task(name="run-migrations", cache_policy=NO_CACHE, timeout_seconds=3600, **RETRIES)
def run_migrations(
    env: Environment,
    image: str,
    direction: Literal["up", "down"] = "up",
    steps: int = 1,
    expected: tuple[MigrationId, ...] = (),
) -> MigrationResult:
    """Migrations in a one-off container of `image`; a non-zero exit, or a pending migration in
    `expected` that the migration table does not record afterwards, fails the step."""
    return env.connect().migrate(image, direction, steps, expected)


@task(name="restore-database", cache_policy=NO_CACHE, timeout_seconds=3600)
def restore_database(env: Environment, backup: Backup) -> None:
    """Replace the database with `backup`. Never retried: a person approved one restore."""
    env.connect().restore_database(backup)
