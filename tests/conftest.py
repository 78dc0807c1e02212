"""What every tier shares: the suite's scheduling across workers (tests/support/schedule.py), the
fault matrix's table (tests/support/matrix.py) and the time of each tier, printed at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import matrix, schedule, timing


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the run's first process (xdist's controller)
        schedule.start_run()
        timing.start(config)
    config.addinivalue_line("markers", "alone: acts on the whole stack; runs with no other test")
    config.addinivalue_line(
        "markers", "last: about what the whole run left; runs after every other"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        schedule.end_run()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    schedule.order(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> schedule.GroupScheduling:
    return schedule.GroupScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if item.get_closest_marker("last") is not None:
        schedule.wait_for_the_others(item)
    with schedule.stack_share(item):
        return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when in ("teardown", "???"):  # "???": xdist's report of a test whose worker died
        schedule.record_ended(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    matrix.summarize(terminalreporter)
    timing.summarize(terminalreporter)
