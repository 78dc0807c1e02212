"""The warm launcher: a deployment run starts in a fraction of a second instead of seconds.

    python -m launcher.warm SOCKET        (scripts/stack.sh starts it, before the worker)

Prefect starts every deployment run in a new Python process, which imports Prefect, the flows and
their SDKs before the flow's first line: about 5 s on an idle 2-core machine here, 12 s on a busy
one, paid again by every release and by every rollback an automation starts. This process pays
it once. It imports them at start, then forks a child for each run that the work pool's command
(`launcher/start.py`) hands it over a unix socket. The child becomes that run's engine, exactly
`python -m prefect.engine`: the command's environment, working directory, stdin, stdout and
stderr, and its exit status goes back to the command. So Prefect sees an ordinary process: logs
on the worker's output, cancellation through the control channel, Crashed when it is killed.

- A command killed (SIGKILL included) takes its run with it: the launcher sees the command's end
  of the socket close and kills the child, as if the run's own process had been killed.
- Code changes take effect. Before each fork the launcher compares the files of every module it
  has imported with what they were when it imported them. When one changed, it answers `stale`:
  that run starts cold, and once no run of the launcher's is left, it replaces itself with a new
  process that imports the new code.
- The launcher is one thread (forking a process with threads can copy a held lock into the
  child), and it creates no Prefect client, event loop or thread before it forks.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

# What every run imports. Both targets' runtimes: in this process their cost is paid once, and a
# run's child then needs no import at all, whichever target its environment names.
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.deployments.steps",
    "flows.release",
    "flows.rollback",
    "targets.docker_host.runtime",
    "targets.aws.runtime",
)
ROOT = Path(__file__).resolve().parents[1]  # the checkout whose code this launcher imports
REQUEST_TIMEOUT_SECONDS = 5  # a command sends its request at once; a silent peer is dropped
MAX_REQUEST_BYTES = 1 << 20


def log(message: str) -> None:
    print(f"[launcher {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loaded_files() -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of the source file of every module imported so far."""
    files: dict[str, tuple[int, int]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or path in files:
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue
        files[path] = (info.st_mtime_ns, info.st_size)
    return files


def changed_files(before: dict[str, tuple[int, int]]) -> list[str]:
    """The files of `before` that changed or went away since."""
    changed = []
    for path, seen in before.items():
        try:
            info = os.stat(path)
        except OSError:
            changed.append(path)
            continue
        if (info.st_mtime_ns, info.st_size) != seen:
            changed.append(path)
    return changed


@dataclass
class Run:
    """One forked run: its child, the child's pidfd, and the command's connection."""

    pid: int
    pidfd: int
    conn: socket.socket
    flow_run_id: str
    started: float = field(default_factory=time.monotonic)
    listening: bool = True  # the command's end is still watched


class Launcher:
    """Serves runs on the unix socket `path`: imports `preload` once, then runs `module` as
    `__main__` in a forked child per request (Prefect's engine; the tests give a small one)."""

    def __init__(
        self, path: Path, preload: tuple[str, ...] = PRELOAD, module: str = "prefect.engine"
    ) -> None:
        self.path = path
        self.preload = preload
        self.module = module
        self.selector = selectors.DefaultSelector()
        self.runs: dict[int, Run] = {}  # by pid
        self.stale: list[str] = []
        self.stopping = False
        self.files: dict[str, tuple[int, int]] = {}
        self.listener: socket.socket | None = None

    # --- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        started = time.monotonic()
        for module in self.preload:
            importlib.import_module(module)
        self.files = loaded_files()
        self.listener = self.bind()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log(
            f"ready on {self.path}: {len(self.files)} files imported in "
            f"{time.monotonic() - started:.1f}s (pid {os.getpid()})"
        )
        while not (self.stopping and not self.runs):
            for key, _ in self.selector.select(timeout=1.0):
                what, run = key.data
                if what == "accept":
                    self.accept()
                elif what == "exited":
                    self.reap(run)
                elif what == "command":
                    self.command_spoke(run)
            if self.stale and not self.runs:
                self.restart()
        self.close_listener()
        log("stopped")

    def stop(self, signum: int, _frame: object) -> None:
        """SIGTERM/SIGINT: take no new run; the loop ends once the runs it has ended."""
        log(f"signal {signum}: stopping once {len(self.runs)} run(s) end")
        self.stopping = True
        self.close_listener()

    def bind(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # the socket is the owner's only: a request carries the environment
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old)
        listener.listen(16)
        return listener

    def close_listener(self) -> None:
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            self.path.unlink(missing_ok=True)

    def restart(self) -> None:
        """Replace this process with a new one that imports the code as it is now."""
        log(f"code changed ({', '.join(self.stale[:3])}...): restarting to import it")
        self.close_listener()
        os.execv(sys.executable, [sys.executable, "-m", "launcher.warm", *self.argv()])

    def argv(self) -> list[str]:
        return [str(self.path), "--module", self.module, "--preload", ",".join(self.preload)]

    # --- one run --------------------------------------------------------------------------

    def accept(self) -> None:
        assert self.listener is not None
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_TIMEOUT_SECONDS)
            request, fds = receive_request(conn)
            if request.get("root") != str(ROOT):
                reply(
                    conn, stale=f"this launcher runs the code of {ROOT}, not {request.get('root')}"
                )
                conn.close()
                return
            if not self.stale:
                self.stale = changed_files(self.files)
            if self.stale:
                reply(conn, stale=f"{self.stale[0]} changed since the launcher imported it")
                conn.close()
                return
            self.fork(conn, request, fds)
        except (OSError, ValueError) as exc:
            log(f"dropped a request: {exc}")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def fork(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            self.become_run(conn, request, fds)
        flow_run_id = request["env"].get("PREFECT__FLOW_RUN_ID", "?")
        run = Run(pid, os.pidfd_open(pid), conn, flow_run_id)
        self.runs[pid] = run
        conn.settimeout(None)
        reply(conn, pid=pid)
        self.selector.register(run.pidfd, selectors.EVENT_READ, ("exited", run))
        self.selector.register(conn, selectors.EVENT_READ, ("command", run))
        log(f"flow run {flow_run_id}: started as pid {pid}")

    def reap(self, run: Run) -> None:
        """The child ended: its status goes to the command, which exits the same way."""
        _, status = os.waitpid(run.pid, 0)
        self.forget(run)
        outcome = (
            {"signal": os.WTERMSIG(status)}
            if os.WIFSIGNALED(status)
            else {"exit": os.waitstatus_to_exitcode(status)}
        )
        with contextlib.suppress(OSError):  # the command may be gone already
            reply(run.conn, **outcome)
        run.conn.close()
        seconds = time.monotonic() - run.started
        log(f"flow run {run.flow_run_id}: pid {run.pid} ended {outcome} after {seconds:.1f}s")

    def command_spoke(self, run: Run) -> None:
        """The command's end of the socket: it only closes (the command ended before its
        run). Its process was killed, so its run's process is killed too, as it would be had
        it been the run's own process."""
        if self.runs.get(run.pid) is not run or not run.listening:
            return  # reaped in the same round: its pid may belong to another process by now
        try:
            data = run.conn.recv(64)
        except OSError:
            data = b""
        if data:
            return
        log(f"flow run {run.flow_run_id}: its command ended first; killing pid {run.pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGKILL)
        self.selector.unregister(run.conn)
        run.listening = False

    def forget(self, run: Run) -> None:
        self.runs.pop(run.pid, None)
        self.selector.unregister(run.pidfd)
        os.close(run.pidfd)
        if run.listening:
            self.selector.unregister(run.conn)
            run.listening = False

    def become_run(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        """In the child: drop the launcher's sockets, take the command's stdio, environment and
        folder, then run Prefect's engine as `python -m prefect.engine` would."""
        code = 1
        try:
            for run in self.runs.values():
                os.close(run.pidfd)
                run.conn.close()
            if self.listener is not None:
                self.listener.close()
            self.selector.close()
            conn.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            if self.module == "prefect.engine":
                refresh_prefect_settings()
            code = run_main(self.module)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(finish(code))


def finish(code: int) -> int:
    """What the interpreter does at exit, in its order: first threading's exit callbacks (Prefect's
    log and event services drain there: a run's last logs, and the `release.failed` event the
    rollback automation waits for), then atexit's; the exit code."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        code = code or 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def refresh_prefect_settings() -> None:
    """Prefect read its settings from the launcher's environment when it was imported; the run's
    environment (its flow run id, the worker's settings) replaces it."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging()


def run_main(module: str) -> int:
    """`python -m MODULE` (Prefect's engine), in this process: its exit code."""
    sys.argv = [sys.argv[0]]
    # As under `python -m`, the module runs as __main__ and is not yet imported as itself.
    sys.modules.pop(module, None)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The command's stdio (three descriptors, with one byte), then its request as a JSON line:
    {"env": {...}, "cwd": "..."}."""
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"expected 3 descriptors (stdin, stdout, stderr), got {len(fds)}")
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk or len(data) > MAX_REQUEST_BYTES:
                raise ValueError("the request ended before its newline")
            data += chunk
        request = json.loads(data)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def reply(conn: socket.socket, **message: object) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start deployment runs as forks of this process.")
    parser.add_argument("socket", type=Path)
    parser.add_argument("--module", default="prefect.engine", help="what each run executes")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="modules imported once")
    args = parser.parse_args(argv)
    preload = tuple(m for m in args.preload.split(",") if m)
    Launcher(args.socket, preload, args.module).serve()


if __name__ == "__main__":
    main()
