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

    @field_validator("services")
    @classmethod
    def _one_migration_owner(cls, services: tuple[ServiceSpec, ...]) -> tuple[ServiceSpec, ...]:
        if not services:
            raise ValueError("an environment needs at least one service")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique, got {names}")
        if sum(s.owns_migrations for s in services) > 1:
            raise ValueError("at most one service may own the migrations")
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
