"""An environment as the flows see it: its services and checks, no target details."""

from __future__ import annotations

from pydantic import Field, field_validator

from domain.checks import CheckSpec
from domain.frozen import Frozen
from domain.services import SLUG, ServiceSpec


class EnvironmentSpec(Frozen):
    """What is released where: the services (in deploy order), the smoke checks, build args."""

    name: str = Field(pattern=SLUG)
    services: tuple[ServiceSpec, ...]
    checks: CheckSpec = CheckSpec()
    build_args: dict[str, str] = Field(default_factory=dict)
    source: str | None = Field(
        default=None,
        description="Where the app's source is (one build context per service) when a run "
        "names none: a path, absolute or relative to this repository's root.",
    )

    @field_validator("services")
    @classmethod
    def _one_migration_owner(cls, services: tuple[ServiceSpec, ...]) -> tuple[ServiceSpec, ...]:
        if not services:
            raise ValueError("an environment needs at least one service")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique, got {names}")
        owners = [s.name for s in services if s.owns_migrations]
        if len(owners) > 1:
            raise ValueError(
                f"at most one service may own the migrations, got {owners}: keep `migrations` "
                "on the service whose image runs them"
            )
        clash = {s.migrator_image() for s in services} & set(names)
        if clash:
            raise ValueError(
                f"a service is named like the migrator image {sorted(clash)}: rename it"
            )
        return services

    def ordered(self) -> list[ServiceSpec]:
        return sorted(self.services, key=lambda s: (s.order, s.name))

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def migration_owner(self) -> ServiceSpec | None:
        return next((s for s in self.services if s.owns_migrations), None)

    def images(self) -> list[tuple[str, ServiceSpec, str | None]]:
        """Every image a release builds, in deploy order: (name, service, Dockerfile stage).
        Each service's own image is named like it; a migrator is `<service>-migrator`."""
        found: list[tuple[str, ServiceSpec, str | None]] = []
        for spec in self.ordered():
            migrations = spec.migration_spec()
            if migrator := spec.migrator_image():
                assert migrations is not None
                found.append((migrator, spec, migrations.image_target))
            found.append((spec.name, spec, None))
        return found

    def owners(self) -> dict[str, str]:
        """Each image's service: `images()` as name -> service name."""
        return {name: spec.name for name, spec, _ in self.images()}

    def database_users(self) -> set[str]:
        """The services that read or write the database (its own or the migrations)."""
        return {s.name for s in self.services if s.uses_database or s.owns_migrations}

    def repository_of(self, image: str) -> str:
        """The repository of an image named by `images()`."""
        for name, spec, stage in self.images():
            if name == image:
                if stage is None:
                    return spec.repository
                migrations = spec.migration_spec()
                assert migrations is not None
                return migrations.repository or f"{spec.repository}-migrator"
        raise KeyError(image)
