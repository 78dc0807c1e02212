"""The migration command contract, the same on every target: command, exit code, the migration
table afterwards, and (output: json) the stand-in's result line."""

from __future__ import annotations

import json

import pytest

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError, TransientError
from domain.migrations import Applied, MigrationSpec, MigrationTable
from domain.results import MigrationResult, SchemaStatus
from domain.services import ServiceSpec
from targets import migrations
from targets.migrations import CommandRun, result_line


def service(name: str, owns: bool = False) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        context=name,
        repository=f"fm/{name}",
        order=1 if owns else 2,
        public_url="http://127.0.0.1:8081",
        owns_migrations=owns,
        migrate_command=("node", "migrate.js"),
    )


ENV = EnvironmentSpec(name="staging", services=(service("backend", True), service("frontend")))


class OneOff:
    """Plays a target's one-off runner: records each command, answers with `run`."""

    def __init__(self, run: CommandRun) -> None:
        self.run, self.commands = run, []

    def __call__(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun:
        self.commands.append((owner.name, image, command))
        return self.run


def unreadable(table: MigrationTable, image: str) -> None:
    """A target that cannot read the migration table (AWS): the JSON result decides."""
    return None


def printed(*lines: str, result: dict | None = None) -> CommandRun:
    out = (*lines, json.dumps(result)) if result is not None else lines
    return CommandRun(0, tuple(out))


def test_status_runs_the_owners_command_in_the_image_and_reads_its_json_line():
    run = OneOff(printed(result={"applied": [1], "available": [1, 2], "pending": [2],
                                 "schema_version": 1}))  # fmt: skip

    status = migrations.read_status(ENV, run, unreadable, "reg/backend:v2")

    assert run.commands == [("backend", "reg/backend:v2", ["node", "migrate.js", "status"])]
    assert status == SchemaStatus(applied=(1,), available=(1, 2), pending=(2,), schema_version=1)


def test_up_reports_what_it_applied():
    run = OneOff(printed("applying 0002_pages", result={"applied": [2], "schema_version": 2}))

    result = migrations.migrate(ENV, run, unreadable, "img", "up")

    assert run.commands[0][2] == ["node", "migrate.js", "up"]
    assert result == MigrationResult(direction="up", applied=(2,), schema_version=2, changed=True)


def test_down_reverts_the_latest_steps_and_nothing_pending_changes_nothing():
    down = OneOff(printed(result={"reverted": [3, 2], "schema_version": 1}))
    up = OneOff(printed(result={"applied": [], "schema_version": 3}))

    reverted = migrations.migrate(ENV, down, unreadable, "img", "down", steps=2)
    unchanged = migrations.migrate(ENV, up, unreadable, "img", "up")

    assert down.commands[0][2] == ["node", "migrate.js", "down", "--steps", "2"]
    assert reverted == MigrationResult(
        direction="down", reverted=(3, 2), schema_version=1, changed=True
    )
    assert unchanged.changed is False


def test_a_failing_command_names_the_step_and_shows_its_errors():
    run = OneOff(CommandRun(1, ("applying 0004_bad",), ("ERROR: syntax error at or near",)))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(ENV, run, unreadable, "reg/backend:v4", "up")

    assert str(error.value) == (
        "`node migrate.js up` in reg/backend:v4 exited 1; nothing after this step ran and the "
        "previous version keeps serving. Its output:\nERROR: syntax error at or near"
    )


def test_exit_75_is_a_temporary_failure_that_changed_nothing_and_is_retried():
    run = OneOff(CommandRun(75, (), ("cannot connect to PostgreSQL at 127.0.0.1:5433",)))

    with pytest.raises(TransientError) as error:
        migrations.migrate(ENV, run, unreadable, "reg/backend:v4", "up")

    assert str(error.value) == (
        "`node migrate.js up` in reg/backend:v4 exited 75 (temporary failure: it changed "
        "nothing); it is retried. Its output:\ncannot connect to PostgreSQL at 127.0.0.1:5433"
    )


def test_a_command_that_never_ran_says_why():
    run = OneOff(CommandRun(None, ("(no output)",), why="TaskFailedToStart; CannotPullContainer"))

    with pytest.raises(ReleaseError, match=r"exited without running \(TaskFailedToStart; Cannot"):
        migrations.read_status(ENV, run, unreadable, "img")


def test_exit_0_without_a_json_result_is_a_failure_not_a_success():
    run = OneOff(CommandRun(0, ("migrated everything, trust me",)))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(ENV, run, unreadable, "img", "up")

    assert str(error.value) == (
        "`node migrate.js up` in img printed no JSON result line (the service declares output: "
        "json, so its command must print its result as JSON last); its last lines: "
        "['migrated everything, trust me']"
    )


def test_an_environment_without_a_migration_owner_is_named():
    env = EnvironmentSpec(name="web", services=(service("frontend"),))

    with pytest.raises(ReleaseError, match="environment 'web' has no service that owns migrations"):
        migrations.read_status(env, OneOff(printed()), unreadable, "img")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["applying 0002", '{"schema_version": 2}', ""], {"schema_version": 2}),
        (['{"a": 1}', "Traceback ..."], None),  # the JSON line must be the last one
        (["[1, 2]"], None),  # an object, not any JSON
        ([], None),
    ],
)
def test_result_line(lines, expected):
    assert result_line(lines) == expected


# -- any app: exit code and the migration table (Payload) ---------------------------------------

PAYLOAD = MigrationSpec(
    command=("payload", "migrate"),
    down_command=("payload", "migrate:down"),
    image_target="migrator",
    table=MigrationTable(name="payload_migrations"),
    folder="src/migrations",
)
CMS = EnvironmentSpec(
    name="local",
    services=(
        ServiceSpec(
            name="backend", context="backend", repository="fm/cms", order=1,
            public_url="http://127.0.0.1:8081", migrations=PAYLOAD,
        ),
    ),
)  # fmt: skip
INITIAL = Applied(name="20261202_011058_initial", batch=1)
SUMMARY = Applied(name="20261203_090000_page_summary", batch=2)


class Table:
    """Plays the database's migration table: `rows` now, and `then` once the command ran."""

    def __init__(self, rows: tuple[Applied, ...], then: tuple[Applied, ...] | None = None):
        self.reads, self.rows, self.then = 0, rows, then

    def __call__(self, table: MigrationTable, image: str) -> tuple[Applied, ...]:
        self.reads += 1
        if self.reads > 1 and self.then is not None:
            return self.then
        return self.rows


def test_up_is_judged_by_the_table_not_by_output():
    run = OneOff(CommandRun(0, ("[09:00] Migrating: 20261203_090000_page_summary",)))
    table = Table((INITIAL,), then=(INITIAL, SUMMARY))

    result = migrations.migrate(
        CMS, run, table, "fm/cms-migrator:v2", "up", expected=[SUMMARY.name]
    )

    assert run.commands == [("backend", "fm/cms-migrator:v2", ["payload", "migrate"])]
    assert result == MigrationResult(
        direction="up", applied=(SUMMARY.name,), schema_version=SUMMARY.name, changed=True
    )


def test_exit_0_that_left_a_pending_migration_unrecorded_fails_the_release():
    run = OneOff(CommandRun(0, ()))  # Payload 3.79+: a silent exit 0
    table = Table((INITIAL,))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(CMS, run, table, "fm/cms-migrator:v2", "up", expected=[SUMMARY.name])

    assert "exited 0, but payload_migrations does not record ['20261203_090000_page_summary']" in (
        str(error.value)
    )


def test_a_dev_push_record_is_refused_before_the_command_runs():
    run = OneOff(CommandRun(0, ()))
    table = Table((INITIAL, Applied(name="dev", batch=-1)))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(CMS, run, table, "fm/cms-migrator:v2", "up", expected=[SUMMARY.name])

    assert run.commands == []
    assert "development 'push' record in payload_migrations (dev, batch -1)" in str(error.value)
    assert "DELETE FROM payload_migrations WHERE batch = -1" in str(error.value)


def test_down_runs_payloads_command_once_and_reports_what_the_table_lost():
    run = OneOff(CommandRun(0, ()))
    table = Table((INITIAL, SUMMARY), then=(INITIAL,))

    result = migrations.migrate(CMS, run, table, "fm/cms-migrator:v2", "down", steps=1)

    assert run.commands == [("backend", "fm/cms-migrator:v2", ["payload", "migrate:down"])]
    assert result == MigrationResult(
        direction="down", reverted=(SUMMARY.name,), schema_version=INITIAL.name, changed=True
    )


def test_status_comes_from_the_table_without_running_anything():
    run = OneOff(CommandRun(0, ()))

    status = migrations.read_status(CMS, run, Table((INITIAL, SUMMARY)), "fm/cms:v2")

    assert run.commands == []
    assert status.applied == (INITIAL.name, SUMMARY.name)
    assert status.schema_version == SUMMARY.name


def test_down_that_exits_0_but_leaves_the_release_recorded_fails():
    run = OneOff(CommandRun(0, ()))
    table = Table((INITIAL, SUMMARY))  # nothing was reverted

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(CMS, run, table, "fm/cms-migrator:v2", "down", expected=[SUMMARY.name])

    assert f"payload_migrations still records ['{SUMMARY.name}']" in str(error.value)


# -- where the target cannot reach the database (AWS): the app's table command ------------------

READER = PAYLOAD.model_copy(update={"table_command": ("node", "scripts/migration-table.mjs")})
CMS_ON_AWS = CMS.model_copy(
    update={"services": (CMS.services[0].model_copy(update={"migrations": READER}),)}
)


class Answers:
    """Plays a one-off runner whose answer depends on the command: the table reader prints
    the next of `tables`, anything else exits with `code`."""

    def __init__(self, *tables: object, code: int = 0) -> None:
        self.tables, self.code, self.commands = list(tables), code, []

    def __call__(self, owner: ServiceSpec, image: str, command: list[str]) -> CommandRun:
        self.commands.append(command)
        if command[:2] == ["node", "scripts/migration-table.mjs"]:
            return CommandRun(0, ("connecting", json.dumps(self.tables.pop(0))))
        return CommandRun(self.code, ())


def read(run: Answers):
    return lambda table, image: migrations.read_by_command(CMS_ON_AWS, run, image)


def test_the_table_command_gets_the_table_and_its_columns_and_its_rows_are_read():
    run = Answers({"rows": [[INITIAL.name, "1"]]}, {"rows": [[INITIAL.name, 1], [SUMMARY.name, 2]]})

    result = migrations.migrate(
        CMS_ON_AWS, run, read(run), "fm/cms-migrator:v2", "up", expected=[SUMMARY.name]
    )

    reader = ["node", "scripts/migration-table.mjs", "payload_migrations", "name", "batch"]
    assert run.commands == [reader, ["payload", "migrate"], reader]
    assert result.applied == (SUMMARY.name,)


def test_no_table_yet_is_no_rows():
    run = Answers({"rows": None})

    assert migrations.read_by_command(CMS_ON_AWS, run, "fm/cms-migrator:v1") == ()


def test_a_silent_exit_0_is_caught_through_the_table_command_too():
    run = Answers({"rows": [[INITIAL.name, 1]]}, {"rows": [[INITIAL.name, 1]]})

    with pytest.raises(ReleaseError, match=r"does not record \['20261203_090000_page_summary'\]"):
        migrations.migrate(
            CMS_ON_AWS, run, read(run), "fm/cms-migrator:v2", "up", expected=[SUMMARY.name]
        )


def test_a_dev_push_record_read_by_the_table_command_is_refused_before_migrating():
    run = Answers({"rows": [[INITIAL.name, 1], ["dev", -1]]})

    with pytest.raises(ReleaseError, match="development 'push' record"):
        migrations.migrate(CMS_ON_AWS, run, read(run), "fm/cms-migrator:v2", "up")
    assert len(run.commands) == 1, "only the table was read"


@pytest.mark.parametrize(
    "printed, problem",
    [
        (CommandRun(0, ("no json here",)), 'expected {"rows"'),
        (CommandRun(0, (json.dumps({"rows": [["a", 1, 2]]}),)), "[name, batch] pairs"),
        (CommandRun(1, ("ECONNREFUSED 127.0.0.1:5432",)), "failed (exit 1)"),
    ],
)
def test_a_table_command_that_breaks_its_contract_is_named(printed: CommandRun, problem: str):
    with pytest.raises(ReleaseError) as error:
        migrations.read_by_command(CMS_ON_AWS, lambda o, i, c: printed, "fm/cms-migrator:v2")

    assert "node scripts/migration-table.mjs payload_migrations name batch" in str(error.value)
    assert problem in str(error.value)
