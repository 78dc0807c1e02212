"""The verify rule every target shares: name every failure; transient only if all may pass."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from domain.errors import ReleaseError, TransientError
from domain.results import Finding, InfrastructureReport
from targets.verify import inspect


def fails(exc: Exception):
    def probe() -> str:
        raise exc

    return probe


def test_every_component_found_gives_the_report():
    report = inspect(
        "docker-host", "local", [("engine", lambda: "28.2"), ("registry", lambda: "ok")]
    )

    assert report == InfrastructureReport(
        target="docker-host",
        findings=(
            Finding(component="engine", ok=True, detail="28.2"),
            Finding(component="registry", ok=True, detail="ok"),
        ),
    )


def test_only_transient_failures_may_pass_by_themselves_so_they_are_retried():
    probes = [("engine", fails(TransientError("restarting"))), ("registry", lambda: "ok")]

    with pytest.raises(TransientError) as error:
        inspect("docker-host", "local", probes)

    assert str(error.value) == "environment 'local' is not ready: engine: restarting"


def test_one_permanent_failure_makes_it_a_release_error_naming_every_failure():
    probes = [
        ("engine", fails(TransientError("restarting"))),
        ("database", fails(ReleaseError("database 'x' does not exist"))),
    ]

    with pytest.raises(ReleaseError) as error:
        inspect("aws", "staging", probes, where=" on AWS")

    assert str(error.value) == (
        "environment 'staging' is not ready on AWS: engine: restarting; "
        "database: database 'x' does not exist"
    )


def test_the_guard_turns_sdk_errors_into_findings():
    @contextmanager
    def guard(component: str):
        try:
            yield
        except KeyError as exc:
            raise TransientError(f"{component} answered 503 ({exc})") from exc

    with pytest.raises(TransientError, match="stack: stack answered 503"):
        inspect("aws", "staging", [("stack", fails(KeyError("x")))], guard=guard)


def test_an_unexpected_error_is_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        inspect("aws", "staging", [("stack", fails(ZeroDivisionError()))])
