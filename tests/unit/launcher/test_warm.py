"""The warm launcher and the work pool's command, as real processes on a real unix socket.

The launcher runs `tests.support.launched` in place of Prefect's engine (its `--module`), so
these tests need no Prefect server; tests/e2e runs deployment runs through the real one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
START = ROOT / "launcher" / "start.py"


@dataclass
class Warm:
    socket: Path
    process: subprocess.Popen
    log: Path
    preloaded: Path  # a module the launcher imported at start: editing it makes the code stale

    def log_text(self) -> str:
        return self.log.read_text()


def wait_until(what: str, condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds}s")
        time.sleep(0.05)


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Warm]:
    preloaded = tmp_path / "modules" / "fm_preloaded.py"
    preloaded.parent.mkdir()
    preloaded.write_text("VALUE = 1\n")
    socket_path = tmp_path / "launcher.sock"
    log = tmp_path / "launcher.log"
    env = {**os.environ, "PYTHONPATH": f"{preloaded.parent}{os.pathsep}{ROOT}"}
    argv = [sys.executable, "-m", "launcher.warm", str(socket_path)]
    argv += ["--module", "tests.support.launched", "--preload", "fm_preloaded"]
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=out, stdout=out)
    try:
        wait_until("the launcher's socket", socket_path.exists)
        yield Warm(socket_path, process, log, preloaded)
    finally:
        process.terminate()
        process.wait(timeout=30)


def command(warm: Warm | None, action: str, cwd: Path, **extra: str) -> subprocess.Popen:
    """The work pool's command, as the worker starts it."""
    env = {**os.environ, "FM_TEST_ACTION": action, "PREFECT__FLOW_RUN_ID": "not-a-uuid"}
    env.pop("FM_LAUNCHER_SOCKET", None)
    env.update(extra)
    if warm is not None:
        env["FM_LAUNCHER_SOCKET"] = str(warm.socket)
    return subprocess.Popen(
        [sys.executable, str(START)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_pid(process: subprocess.Popen) -> int:
    """The run's pid, from the first line it prints."""
    first = process.stdout.readline()
    return int(first.split()[0].removeprefix("pid="))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_run_is_a_fork_of_the_launcher_with_the_commands_stdio_environment_and_folder(
    warm, tmp_path
):
    proc = command(warm, "exit 7", tmp_path, FM_TEST_VALUE="from-the-worker")

    out, err = proc.communicate("hello from stdin\n", timeout=30)

    first, second, *ending = out.splitlines()
    assert first.split()[1] == f"ppid={warm.process.pid}"  # forked by the launcher, not started
    assert second == f"cwd={tmp_path} value=from-the-worker"
    assert ending == ["drained", "atexit"]  # the exit callbacks ran, in the interpreter's order
    assert "stdin=hello from stdin" in err
    assert proc.returncode == 7
    assert "starting the run cold" not in err


def test_a_sigterm_to_the_command_reaches_the_run(warm, tmp_path):
    proc = command(warm, "wait", tmp_path)
    child_pid(proc)

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)

    assert out.strip() == "terminated"
    assert proc.returncode == 3


def test_a_run_killed_by_a_signal_kills_its_command_with_the_same_signal(warm, tmp_path):
    proc = command(warm, "kill-self", tmp_path)

    proc.communicate(timeout=30)

    assert proc.returncode == -signal.SIGKILL  # so the worker reports the run Crashed


def test_a_killed_command_takes_its_run_with_it(warm, tmp_path):
    proc = command(warm, "wait", tmp_path)
    pid = child_pid(proc)
    assert alive(pid)

    proc.kill()
    proc.wait(timeout=30)

    wait_until(f"the end of run pid {pid}", lambda: not alive(pid))
    assert f"killing pid {pid}" in warm.log_text()


def test_changed_code_starts_that_run_cold_and_the_launcher_imports_it_again(warm, tmp_path):
    warm.preloaded.write_text("VALUE = 2  # changed\n")

    stale = command(warm, "exit 0", tmp_path)
    _, err = stale.communicate("", timeout=120)

    assert "fm_preloaded.py changed since the launcher imported it" in err
    assert "starting the run cold (python -m prefect.engine)" in err
    assert "Invalid flow run id" in err  # the cold engine ran (and refused the test's run id)
    wait_until("the launcher's restart", lambda: warm.log_text().count("ready on") == 2)
    wait_until("the new socket", warm.socket.exists)
    fresh = command(warm, "exit 0", tmp_path)
    out, err = fresh.communicate("", timeout=30)
    assert fresh.returncode == 0
    assert out.split()[1] == f"ppid={warm.process.pid}"  # the same process, warm again
    assert "starting the run cold" not in err


def test_without_a_launcher_the_run_starts_cold_and_says_why(tmp_path):
    proc = command(None, "exit 0", tmp_path, FM_LAUNCHER_SOCKET=str(tmp_path / "none.sock"))

    _, err = proc.communicate("", timeout=120)

    assert f"no launcher answers at {tmp_path / 'none.sock'}" in err
    assert "Invalid flow run id" in err
    assert proc.returncode == 1


def test_a_launcher_never_runs_another_checkouts_code(warm, tmp_path):
    other = tmp_path / "other-checkout" / "launcher"
    other.mkdir(parents=True)
    (other / "start.py").write_text(START.read_text())
    env = {**os.environ, "FM_LAUNCHER_SOCKET": str(warm.socket), "PREFECT__FLOW_RUN_ID": "x"}

    done = subprocess.run(
        [sys.executable, str(other / "start.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (
        f"this launcher runs the code of {ROOT}, not {tmp_path / 'other-checkout'}" in done.stderr
    )
    assert "starting the run cold" in done.stderr
