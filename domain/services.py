"""A deployable service of the application: a third service is configuration, not code."""

from __future__ import annotations

from pydantic import Field

from domain.frozen import Frozen

SLUG = r"^[a-z][a-z0-9-]{0,39}$"


class ServiceSpec(Frozen):
    """One service: how it is built, where users reach it, how its health is judged."""

    name: str = Field(pattern=SLUG, description="Service name, e.g. backend.")
    context: str = Field(description="Build context, relative to the release source.")
    dockerfile: str = Field(default="Dockerfile", description="Dockerfile inside the context.")
    repository: str = Field(
        description="Image repository in the registry, e.g. flowmasters/backend."
    )
    order: int = Field(description="Deploy order: lower first (backend before frontend).")
    public_url: str = Field(
        description="Where users reach the service, e.g. http://127.0.0.1:8081."
    )
    health_path: str = Field(default="/api/health", description="Path answering 200 when healthy.")
    lb_check_path: str | None = Field(
        default=None,
        description="What the load balancer probes to keep a server in rotation (default: the "
        "health path). It asks 'can it serve?'; the smoke checks ask 'is it the right version?'.",
    )
    owns_migrations: bool = Field(default=False, description="Its image runs the migrations.")
    migrations_dir: str = Field(
        default="migrations", description="Folder of NNNN_name.up.sql files, in the context."
    )
    migrate_command: tuple[str, ...] = Field(
        default=("python3", "/app/migrate.py"),
        description="Command in the image taking up|down|status and printing JSON last.",
    )
    uses_database: bool = Field(default=False, description="Gets the database connection.")
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret runtime settings.")
    health_timeout_seconds: float = Field(default=60, gt=0, description="Budget to become healthy.")
