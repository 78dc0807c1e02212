import pytest

from domain.plan import ReleasePlan, ServicePlan, backup_reason


def plan(kept: dict[str, bool], pending=(), known=True) -> ReleasePlan:
    return ReleasePlan(
        environment="staging",
        version="v2",
        services=tuple(
            ServicePlan(service=name, current="v1", next="v2", image="x", to_build=not k, kept=k)
            for name, k in kept.items()
        ),
        pending_migrations=pending,
        migrations_note="",
        migrations_known=known,
    )


DATABASE_USERS = {"backend"}


class TestBackupReason:
    def test_a_migration_gets_a_backup_first(self):
        assert backup_reason(plan({"backend": True}, pending=(3,)), DATABASE_USERS) == (
            "migrations may run"
        )
        assert backup_reason(plan({"backend": True}, known=False), DATABASE_USERS) == (
            "migrations may run"
        )

    def test_a_new_version_of_a_service_that_uses_the_database_gets_a_backup(self):
        changed = plan({"backend": False, "frontend": True})

        assert backup_reason(changed, DATABASE_USERS) == "backend uses the database and changes"

    @pytest.mark.parametrize(
        "kept", [{"backend": True, "frontend": False}, {"backend": True, "frontend": True}]
    )
    def test_no_backup_when_nothing_can_change_what_the_database_holds(self, kept):
        assert backup_reason(plan(kept), DATABASE_USERS) is None


def test_a_plan_changes_nothing_only_with_every_image_kept_and_no_migration_pending():
    assert plan({"backend": True, "frontend": True}).changes_nothing
    assert not plan({"backend": True, "frontend": False}).changes_nothing
    assert not plan({"backend": True, "frontend": True}, pending=(3,)).changes_nothing
    assert not plan({"backend": True, "frontend": True}, known=False).changes_nothing
