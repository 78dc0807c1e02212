"""How the suite runs several tests at once (pytest-xdist, `--dist loadgroup`) without two of them
ever acting on one environment, and which tests must have the stack to themselves.

- **Groups** (`GroupScheduling`, which the run's first process uses). A module's tests share its environment (a module-scoped fixture) and run in file
  order, so a module is one group: one worker runs it from start to end. Modules that act on one
  shared environment say so with the same `xdist_group` mark (all of `sandbox`'s: "sandbox"), and
  tests/flows is one group (its package-scoped Prefect harness starts once). Tests of different
  groups never share an environment: each makes its own, with names and ports of its own
  (testbed/scratch.py gives each worker its own range of ports).
- **Order.** Groups start longest first (tests/durations.json: the seconds each took in a
  measured run), so the long ones overlap and the short ones fill the gaps at the end; a worker
  still busy with a long group is handed a short one next (see `GroupScheduling`).
- **Alone** (`@pytest.mark.alone`): a test that acts on the whole stack (it restarts the Prefect
  server) waits until no other test runs, and no other test starts until it has ended. A lock
  file every test holds shared and an alone test holds exclusively, behind a turnstile so a
  waiting alone test is not starved by tests that keep starting.
- **Last** (`@pytest.mark.last`): a test about what the whole run left behind (the secret scan)
  sorts last and waits until every other collected test has ended, in whichever worker.

The workers share a folder named after the run (`FM_PYTEST_RUN`, set in the run's first process
and inherited by its workers) for the lock files and the list of ended tests. Without xdist (one
process, `-n 0`) the same marks hold trivially: tests run one at a time, the last ones sort last.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
LAST_WAIT_IDLE_SECONDS = 1800  # a last test gives up when no other test ended for this long
LONG_GROUP_SECONDS = 30.0  # a group expected to take this long is long (see GroupScheduling)


def group_of(item: pytest.Item) -> str:
    """The item's group: its own xdist_group mark, else its package's (tests/flows), else its
    module's path."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return group_of_path(item.nodeid.split("::")[0])


def group_of_path(path: str) -> str:
    return "tests/flows" if path.startswith("tests/flows/") else path


GROUPS_FILE = "groups.json"
LAST_FILE = "last-groups.json"


def group_of_nodeid(nodeid: str) -> str:
    """The group of a collected test, by its id: from the map the workers wrote at collection
    (the marks are on the items, which the process that schedules never sees)."""
    return groups().get(nodeid) or group_of_path(nodeid.split("::")[0])


_groups: dict[str, str] = {}


def groups() -> dict[str, str]:
    """The map, read once it exists (the scheduler asks for each test's group at every report;
    the workers write the map before any test runs, and every worker writes the same)."""
    if not _groups:
        folder = run_dir()
        try:
            _groups.update(json.loads((folder / GROUPS_FILE).read_text()) if folder else {})
        except FileNotFoundError:
            return {}
    return _groups


def write_groups(items: list[pytest.Item]) -> None:
    """{nodeid: group} for the scheduler; every worker writes the same map (atomically)."""
    folder = run_dir()
    if folder is None:
        return
    part = folder / f"{GROUPS_FILE}.{os.getpid()}"
    part.write_text(json.dumps({item.nodeid: group_of(item) for item in items}))
    part.replace(folder / GROUPS_FILE)
    last = sorted({group_of(item) for item in items if item.get_closest_marker("last")})
    part = folder / f"{LAST_FILE}.{os.getpid()}"
    part.write_text(json.dumps(last))
    part.replace(folder / LAST_FILE)


def last_groups() -> set[str]:
    """The groups of `last` tests, which the scheduler hands out only after all others."""
    folder = run_dir()
    try:
        return set(json.loads((folder / LAST_FILE).read_text())) if folder else set()
    except FileNotFoundError:
        return set()


class GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with our groups as the scopes: one worker runs a group's tests,
    in their order; groups go to the workers in the collection's order (longest first).

    Not xdist's own `--dist loadgroup`: it names a test's group by appending it to the test's
    id, which pytest 9.2's structured ids no longer take, so every test was scheduled alone."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._expected = expected_seconds()

    def _split_scope(self, nodeid: str) -> str:
        return group_of_nodeid(nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        """The next group for `node`: the longest waiting one, unless `node` still has tests of a
        long group to run. xdist hands a worker its next group when two of its tests are left,
        so that it never idles between groups, and that group waits behind those two. Waiting
        there, a short group costs nothing; a long one held its work back while the other
        workers ran out of it (a run of 27 min whose groups summed to 68 min on 3 workers,
        measured). So a busy worker gets the shortest group waiting (never a `last` one)."""
        if self._runs_long(node):
            short = self._shortest_waiting()
            if short is not None:
                self.workqueue.move_to_end(short, last=False)
        super()._assign_work_unit(node)

    def _runs_long(self, node: WorkerController) -> bool:
        seconds = self._expected
        return any(
            seconds.get(scope, 0.0) >= LONG_GROUP_SECONDS and not all(tests.values())
            for scope, tests in self.assigned_work.get(node, {}).items()
        )

    def _shortest_waiting(self) -> str | None:
        seconds, last = self._expected, last_groups()
        short = [scope for scope in self.workqueue if scope not in last]
        return min(short, key=lambda scope: seconds.get(scope, 0.0), default=None)


def expected_seconds() -> dict[str, float]:
    try:
        return json.loads(DURATIONS.read_text())
    except FileNotFoundError:
        return {}


def order(items: list[pytest.Item]) -> None:
    """Sort: groups by their expected time, longest first, and `last` items at the very end;
    collection order within a group. Then tell the scheduler each test's group."""
    seconds = expected_seconds()
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(group_of(item), index)

    def key(pair: tuple[int, pytest.Item]) -> tuple[bool, float, int, int]:
        index, item = pair
        group = group_of(item)
        last = item.get_closest_marker("last") is not None
        return (last, -seconds.get(group, 0.0), first_seen[group], index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]
    write_groups(items)


RUN = "FM_PYTEST_RUN"  # set by the first process of a run; its workers inherit it


def start_run() -> None:
    """In the run's first process, before any worker starts: name the run."""
    os.environ.setdefault(RUN, uuid.uuid4().hex)


_made: set[Path] = set()


def run_dir() -> Path | None:
    """A folder every process of this run shares (None outside a run); made at the first ask."""
    name = os.environ.get(RUN)
    if not name:
        return None
    path = Path(tempfile.gettempdir()) / f"fm-pytest-{name}"
    if path not in _made:
        path.mkdir(exist_ok=True)
        _made.add(path)
    return path


def end_run() -> None:
    """In the run's first process, after every worker ended."""
    folder = run_dir()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def flocked(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def stack_share(item: pytest.Item) -> Iterator[None]:
    """Hold the stack shared for a test, or alone for an `alone` one (see the module's doc)."""
    folder = run_dir()
    if folder is None:
        yield
        return
    alone = item.get_closest_marker("alone") is not None
    turnstile, stack = folder / "turnstile.lock", folder / "stack.lock"
    if alone:
        with flocked(turnstile, fcntl.LOCK_EX), flocked(stack, fcntl.LOCK_EX):
            yield
        return
    with flocked(turnstile, fcntl.LOCK_EX):
        pass  # behind an alone test that is waiting, not beside it
    with flocked(stack, fcntl.LOCK_SH):
        yield


def record_ended(nodeid: str) -> None:
    folder = run_dir()
    if folder is not None:
        with (folder / "ended").open("a") as handle:
            handle.write(nodeid + "\n")


def wait_for_the_others(item: pytest.Item) -> None:
    """Before a `last` test: every other collected test of this run has ended (its teardown was
    reported, in any worker). Fails naming the missing ones if none ends for a long while."""
    folder = run_dir()
    if folder is None:
        return
    others = {i.nodeid for i in item.session.items if i.get_closest_marker("last") is None}
    ended_file = folder / "ended"
    seen, idle_since = 0, time.monotonic()
    while True:
        ended = set(ended_file.read_text().split("\n")) if ended_file.exists() else set()
        missing = others - ended
        if not missing:
            return
        if len(ended) != seen:
            seen, idle_since = len(ended), time.monotonic()
        elif time.monotonic() - idle_since > LAST_WAIT_IDLE_SECONDS:
            pytest.fail(
                f"{item.nodeid} runs after every other test, but {len(missing)} of them did not "
                f"end within {LAST_WAIT_IDLE_SECONDS} s of the last that did: "
                + ", ".join(sorted(missing)[:5])
            )
        time.sleep(1)
