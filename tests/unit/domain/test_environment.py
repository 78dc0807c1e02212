import pytest
from pydantic import ValidationError

from domain.environment import EnvironmentSpec
from domain.services import ServiceSpec


def service(name, order, owns_migrations=False):
    return ServiceSpec(
        name=name,
        context=name,
        repository=f"flowmasters/{name}",
        order=order,
        public_url="http://127.0.0.1:8081",
        owns_migrations=owns_migrations,
    )


class TestValidation:
    @pytest.mark.parametrize(
        ("services", "message"),
        [
            ((), "an environment needs at least one service"),
            ((service("backend", 1), service("backend", 2)), "service names must be unique"),
            (
                (service("backend", 1, True), service("worker", 2, True)),
                "at most one service may own the migrations",
            ),
        ],
        ids=["no-services", "duplicate-names", "two-migration-owners"],
    )
    def test_invalid_services_are_rejected(self, services, message):
        with pytest.raises(ValidationError, match=message):
            EnvironmentSpec(name="staging", services=services)

    def test_invalid_environment_name_is_rejected(self):
        with pytest.raises(ValidationError):
            EnvironmentSpec(name="Staging env", services=(service("backend", 1),))


def test_ordered_sorts_by_order_then_name():
    spec = EnvironmentSpec(
        name="staging",
        services=(service("frontend", 2), service("worker", 1), service("backend", 1)),
    )

    assert [s.name for s in spec.ordered()] == ["backend", "worker", "frontend"]


def test_migration_owner():
    owned = EnvironmentSpec(
        name="staging", services=(service("frontend", 2), service("backend", 1, True))
    )
    unowned = EnvironmentSpec(name="staging", services=(service("frontend", 2),))

    assert owned.migration_owner().name == "backend"
    assert unowned.migration_owner() is None
