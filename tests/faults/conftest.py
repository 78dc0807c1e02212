"""The fault matrix: what the pipeline survives, on the real stack, with faults from real means
(a loopback fault proxy in front of a real service, a killed process). Each test adds its rows to
MATRIX (tests/support/matrix.py); the table is printed at the end of the run and written to
benchmarks/results/faults-<time>.md (`scripts/test.sh tests/faults` runs only this tier).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.scratch import stack_dir
from tests.integration.conftest import stack  # noqa: F401  (the stack must be up)
from tests.support.faultproxy import FaultProxy, LineFaultProxy, PostgresFaultProxy
from tests.support.matrix import attach


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """The rows a test added travel with its report (see tests/support/matrix.py)."""
    report = yield
    attach(report)
    return report


@dataclass
class Proxies:
    registry: FaultProxy
    engine: FaultProxy
    database: PostgresFaultProxy
    admin: LineFaultProxy  # HAProxy's runtime API

    def clear(self) -> None:
        self.registry.share_503 = 0.0
        self.registry.rules.clear()
        self.engine.rules.clear()
        self.database.refuse.clear()
        self.admin.clear()

    def through(self, checks_window: int) -> Callable[[str, dict[str, Any]], None]:
        """An `edit` for create_environment: the environment reaches its registry, engine,
        database and HAProxy admin socket through these proxies, with a short checks window
        (the steps before the checks are under test)."""

        def edit(_name: str, description: dict[str, Any]) -> None:
            target = description["target"]
            target["registry"] = self.registry.address
            target["docker_host"] = f"tcp://{self.engine.address}"
            target["database"]["port"] = self.database.port
            target["proxy_admin_socket"] = self.admin.path
            description["checks"]["window_seconds"] = checks_window

        return edit


@pytest.fixture(scope="module")
def proxies() -> Iterator[Proxies]:
    """The registry, the Docker engine, PostgreSQL and HAProxy's admin socket, each behind a
    fault proxy of its own (one set per test module)."""
    sockets = tempfile.mkdtemp(prefix="fm-admin-")  # short: a unix socket path has 108 bytes
    made = Proxies(
        registry=FaultProxy("127.0.0.1", int(os.environ.get("FM_REGISTRY_PORT", "5000"))),
        engine=FaultProxy("", 0, upstream_unix=str(stack_dir() / "docker.sock")),
        database=PostgresFaultProxy("127.0.0.1", int(os.environ.get("FM_POSTGRES_PORT", "5433"))),
        admin=LineFaultProxy(
            str(stack_dir() / "haproxy" / "admin.sock"), os.path.join(sockets, "admin.sock")
        ),
    )
    started = (made.registry, made.engine, made.database, made.admin)
    for proxy in started:
        proxy.start()
    yield made
    for proxy in started:
        proxy.stop()
    shutil.rmtree(sockets, ignore_errors=True)
    shutil.rmtree(sockets, ignore_errors=True)
