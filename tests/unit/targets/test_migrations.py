"""The migration command contract, the same on every target: command, exit code, JSON result."""

from __future__ import annotations

import json

import pytest

from domain.environment import EnvironmentSpec
from domain.errors import ReleaseError
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


def printed(*lines: str, result: dict | None = None) -> CommandRun:
    out = (*lines, json.dumps(result)) if result is not None else lines
    return CommandRun(0, tuple(out))


def test_status_runs_the_owners_command_in_the_image_and_reads_its_json_line():
    run = OneOff(printed(result={"applied": [1], "available": [1, 2], "pending": [2],
                                 "schema_version": 1}))  # fmt: skip

    status = migrations.read_status(ENV, run, "reg/backend:v2")

    assert run.commands == [("backend", "reg/backend:v2", ["node", "migrate.js", "status"])]
    assert status == SchemaStatus(applied=(1,), available=(1, 2), pending=(2,), schema_version=1)


def test_up_reports_what_it_applied():
    run = OneOff(printed("applying 0002_pages", result={"applied": [2], "schema_version": 2}))

    result = migrations.migrate(ENV, run, "img", "up")

    assert run.commands[0][2] == ["node", "migrate.js", "up"]
    assert result == MigrationResult(direction="up", applied=(2,), schema_version=2, changed=True)


def test_down_reverts_the_latest_steps_and_nothing_pending_changes_nothing():
    down = OneOff(printed(result={"reverted": [3, 2], "schema_version": 1}))
    up = OneOff(printed(result={"applied": [], "schema_version": 3}))

    reverted = migrations.migrate(ENV, down, "img", "down", steps=2)
    unchanged = migrations.migrate(ENV, up, "img", "up")

    assert down.commands[0][2] == ["node", "migrate.js", "down", "--steps", "2"]
    assert reverted == MigrationResult(
        direction="down", reverted=(3, 2), schema_version=1, changed=True
    )
    assert unchanged.changed is False


def test_a_failing_command_names_the_step_and_shows_its_errors():
    run = OneOff(CommandRun(1, ("applying 0004_bad",), ("ERROR: syntax error at or near",)))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(ENV, run, "reg/backend:v4", "up")

    assert str(error.value) == (
        "`up` migrations in reg/backend:v4 exited 1; nothing after this step ran and the previous "
        "version keeps serving. Its output:\nERROR: syntax error at or near"
    )


def test_a_command_that_never_ran_says_why():
    run = OneOff(CommandRun(None, ("(no output)",), why="TaskFailedToStart; CannotPullContainer"))

    with pytest.raises(ReleaseError, match=r"exited without running \(TaskFailedToStart; Cannot"):
        migrations.read_status(ENV, run, "img")


def test_exit_0_without_a_json_result_is_a_failure_not_a_success():
    run = OneOff(CommandRun(0, ("migrated everything, trust me",)))

    with pytest.raises(ReleaseError) as error:
        migrations.migrate(ENV, run, "img", "up")

    assert str(error.value) == (
        "`node migrate.js up` in img printed no JSON result line (the migrate command must print "
        "its result as JSON last); its last lines: ['migrated everything, trust me']"
    )


def test_an_environment_without_a_migration_owner_is_named():
    env = EnvironmentSpec(name="web", services=(service("frontend"),))

    with pytest.raises(ReleaseError, match="environment 'web' has no service that owns migrations"):
        migrations.read_status(env, OneOff(printed()), "img")


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
