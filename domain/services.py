"""A deployable service of the application: a third service is configuration, not code."""

from __future__ import annotations

from pydantic import Field, model_validator

from domain.frozen import Frozen
from domain.migrations import MigrationSpec, MigrationTable
from domain.rollout import RolloutSpec

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
    admin_path: str | None = Field(
        default=None, description="Where people administer it (Payload: /admin), if anywhere."
    )
    lb_check_path: str | None = Field(
        default=None,
        description="What the load balancer probes to keep a server in rotation (default: the "
        "health path). It asks 'can it serve?'; the smoke checks ask 'is it the right version?'.",
    )
    owns_migrations: bool = Field(
        default=False, description="Runs the migrations (implied by `migrations`)."
    )
    migrations: MigrationSpec | None = Field(
        default=None, description="How its migrations run and are checked (any app)."
    )
    migrations_dir: str = Field(
        default="migrations",
        description="Shorthand for the stand-in's protocol: folder of NNNN_name.up.sql files.",
    )
    migrate_command: tuple[str, ...] = Field(
        default=("python3", "/app/migrate.py"),
        description="Shorthand for the stand-in's protocol: a command taking up|down|status "
        "and printing JSON last. Ignored when `migrations` is given.",
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Named volume -> path in the container, mounted into every slot (uploads). "
        "Docker host only; on AWS uploads go to S3.",
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variable -> name of a Prefect Secret block, read at the call (never stored "
        "in an image, the description or a log), e.g. {PAYLOAD_SECRET: local-payload-secret}.",
    )
    version_build_arg: str = Field(
        default="APP_VERSION",
        description="Build argument that carries the release's version into the image (Next.js "
        "reads it for its deployment id).",
    )
    uses_database: bool = Field(default=False, description="Gets the database connection.")
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret runtime settings.")
    health_timeout_seconds: float = Field(default=60, gt=0, description="Budget to become healthy.")
    rollout: RolloutSpec = Field(
        default=RolloutSpec(),
        description="How users move to a new version: blue-green (all at once, the default) "
        "or canary (a share first, in steps judged by their traffic).",
    )

    @model_validator(mode="after")
    def _owner_has_a_contract(self) -> ServiceSpec:
        if self.migrations is not None and not self.owns_migrations:
            object.__setattr__(self, "owns_migrations", True)
        return self

    def migration_spec(self) -> MigrationSpec | None:
        """The declared contract, or the stand-in's JSON protocol spelled out as one."""
        if self.migrations is not None:
            return self.migrations
        if not self.owns_migrations:
            return None
        base = self.migrate_command
        return MigrationSpec(
            command=(*base, "up"),
            down_command=(*base, "down", "--steps", "{steps}"),
            status_command=(*base, "status"),
            output="json",
            table=MigrationTable(
                name="schema_migrations", name_column="version", batch_column=None
            ),
            folder=self.migrations_dir,
            pattern=r"^(\d+)_[^.]+\.up\.sql$",
        )

    def migrator_image(self) -> str | None:
        """The name of its migrator image (`<service>-migrator`), when it declares one."""
        spec = self.migration_spec()
        return f"{self.name}-migrator" if spec and spec.image_target else None
