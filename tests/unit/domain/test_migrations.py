"""The migration contract's pure rules: which migrations are pending, what a run applied or
reverted, what counts as a dev-push record, and the migrator image an owner declares."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain import migrations as rules
from domain.environment import EnvironmentSpec
from domain.migrations import Applied, MigrationSpec, MigrationTable
from domain.services import ServiceSpec

TABLE = MigrationTable(name="payload_migrations")
A, B = Applied(name="20261202_011058_initial", batch=1), Applied(name="20261203_page", batch=2)


def test_available_migrations_are_the_files_matching_the_pattern_in_order(tmp_path):
    for name in ("20261203_090000_page.ts", "20261202_011058_initial.ts", "index.ts",
                 "20261202_011058_initial.json", "notes.md"):  # fmt: skip
        (tmp_path / name).write_text("")

    found = rules.available_migrations(tmp_path, MigrationSpec(command=("x",)).pattern)

    assert found == ("20261202_011058_initial", "20261203_090000_page")


def test_numbered_migrations_stay_numbers_and_sort_as_numbers(tmp_path):
    for name in ("0010_later.up.sql", "0002_pages.up.sql", "0002_pages.down.sql"):
        (tmp_path / name).write_text("")

    assert rules.available_migrations(tmp_path, r"^(\d+)_[^.]+\.up\.sql$") == (2, 10)


def test_a_missing_folder_has_no_migrations(tmp_path):
    assert rules.available_migrations(tmp_path / "nope", r"^(\d+)") == ()


def test_pending_keeps_the_folders_order():
    assert rules.pending(["a", "b", "c"], ["b"]) == ("a", "c")


def test_what_a_run_applied_and_reverted():
    assert rules.newly_applied((A,), (A, B)) == (B.name,)
    assert rules.reverted((A, B), (A,)) == (B.name,)
    assert rules.latest((A, B)) == B.name
    assert rules.latest(()) is None


def test_a_dev_push_row_is_not_the_schema_version_and_is_refused():
    push = Applied(name="dev", batch=-1)

    assert rules.latest((push, A)) == A.name
    assert rules.dev_push_rows((push, A), TABLE) == [push]
    assert rules.refuse_dev_push((A,), TABLE, "local") is None
    why = rules.refuse_dev_push((push, A), TABLE, "local")
    assert why is not None and "environment 'local'" in why and "(dev, batch -1)" in why


def test_a_table_without_a_dev_push_batch_never_refuses():
    table = MigrationTable(name="schema_migrations", batch_column=None, dev_push_batch=None)

    assert rules.refuse_dev_push((Applied(name=1, batch=-1),), table, "x") is None


def test_down_command_replaces_steps_or_runs_once():
    stand_in = MigrationSpec(command=("m", "up"), down_command=("m", "down", "--steps", "{steps}"))
    payload = MigrationSpec(
        command=("payload", "migrate"), down_command=("payload", "migrate:down")
    )

    assert rules.down_command(stand_in, 3) == (["m", "down", "--steps", "3"], 1)
    assert rules.down_command(payload, 3) == (["payload", "migrate:down"], 1)


@pytest.mark.parametrize("bad", ["payload_migrations; DROP TABLE users", "1table", "a-b"])
def test_table_names_are_identifiers(bad):
    with pytest.raises(ValidationError):
        MigrationTable(name=bad)


def test_a_pattern_without_a_group_is_refused():
    with pytest.raises(ValidationError, match="needs a group"):
        MigrationSpec(command=("x",), pattern=r"^\d+\.sql$")


def owner(**migrations) -> ServiceSpec:
    return ServiceSpec(
        name="backend", context="backend", repository="fm/backend", order=1,
        public_url="http://127.0.0.1:8081",
        migrations=MigrationSpec(command=("payload", "migrate"), **migrations),
    )  # fmt: skip


def test_an_owner_with_a_migrator_stage_adds_an_image_under_the_same_version():
    env = EnvironmentSpec(name="local", services=(owner(image_target="migrator"),))

    assert env.migration_owner() is not None
    assert [(name, stage) for name, _, stage in env.images()] == [
        ("backend-migrator", "migrator"),
        ("backend", None),
    ]
    assert env.repository_of("backend-migrator") == "fm/backend-migrator"
    assert env.repository_of("backend") == "fm/backend"


def test_without_a_stage_the_migrations_run_in_the_service_image():
    env = EnvironmentSpec(name="local", services=(owner(),))

    assert [name for name, _, _ in env.images()] == ["backend"]


def test_the_stand_in_shorthand_is_the_json_contract():
    spec = ServiceSpec(
        name="backend", context="b", repository="r", order=1, public_url="http://127.0.0.1:1",
        owns_migrations=True,
    ).migration_spec()  # fmt: skip

    assert spec is not None
    assert spec.output == "json"
    assert spec.command == ("python3", "/app/migrate.py", "up")
    assert spec.table == MigrationTable(
        name="schema_migrations", name_column="version", batch_column=None
    )


def test_table_rows_reads_pairs_and_null_is_no_table():
    rows = rules.table_rows({"rows": [["20261202_011058_initial", "1"], ["dev", -1], [7, None]]})
    assert rows == (
        Applied(name="20261202_011058_initial", batch=1),
        Applied(name="dev", batch=-1),
        Applied(name=7, batch=None),
    )
    assert rules.table_rows({"rows": None}) is None
    with pytest.raises(ValueError):
        rules.table_rows({"applied": []})
