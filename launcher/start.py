"""The work pool's command for a deployment run: hand the run to the warm launcher.

    python launcher/start.py          (prefect.yaml's job variable `command`)

The worker starts this process with the run's environment (PREFECT__FLOW_RUN_ID, the control
channel's port, the worker's settings). It passes its environment, working directory and
stdin/stdout/stderr to the launcher (`launcher/warm.py`, at FM_LAUNCHER_SOCKET), whose forked
child runs the engine at once; this process then stands for that child: it forwards SIGTERM,
SIGINT and SIGHUP to it and exits as it exits (with its code, or killed by the same signal). When
no launcher answers, or the launcher's code is stale, it becomes `python -m prefect.engine`
itself: the run starts cold, seconds later, and the log says why.

Standard library only, and nothing else imported: this process's start is part of every run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

SOCKET_ENV = "FM_LAUNCHER_SOCKET"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def say(message: str) -> None:
    print(f"launcher: {message}", file=sys.stderr, flush=True)


class Relay:
    """The forwarded signals, caught from before the hand-over: until the run's pid is known
    they are held (a SIGTERM then must neither kill this process, which would take the run with
    it, nor be lost), then sent to the run."""

    def __init__(self) -> None:
        self.child = 0
        self.pending: list[int] = []

    def install(self) -> None:
        for signum in FORWARDED:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self.child:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.child, signum)

    def started(self, pid: int) -> None:
        self.child = pid
        for signum in self.pending:
            self.on_signal(signum, None)
        self.pending.clear()

    def uninstall(self) -> None:
        """Default handlers again; a signal held meanwhile ends this process as it would have."""
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        for signum in self.pending:
            os.kill(os.getpid(), signum)


RELAY = Relay()


def start_cold(why: str) -> None:
    """Become the engine in this process (never returns)."""
    say(f"{why}; starting the run cold (python -m prefect.engine)")
    RELAY.uninstall()
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine"])


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def hand_over(sock: socket.socket) -> None:
    """Our stdio with one byte, then the request line."""
    socket.send_fds(sock, [b"R"], [0, 1, 2])
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "root": ROOT}
    sock.sendall(json.dumps(request).encode() + b"\n")


def exit_like(outcome: dict) -> None:
    """Exit as the run's process did: the same code, or killed by the same signal."""
    if "signal" in outcome:
        signum = int(outcome["signal"])
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be handled
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    raise SystemExit(int(outcome.get("exit", 1)))


def follow(sock: socket.socket) -> None:
    """Read the launcher's answers: the child's pid, then how it ended."""
    sock.settimeout(None)
    lines = sock.makefile("rb")
    for line in lines:
        message = json.loads(line)
        if "stale" in message:
            start_cold(f"the launcher's code is stale ({message['stale']})")
        if "pid" in message:
            RELAY.started(int(message["pid"]))
            continue
        exit_like(message)
    child = RELAY.child
    if not child:
        start_cold("the launcher closed the connection before it started the run")
    # The launcher ended before the run: it cannot report the run's end, so the run ends here
    # (the worker then reports it Crashed, and the rollback automation takes over).
    say(f"the launcher ended while pid {child} ran; terminating it")
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signal.SIGTERM)
    raise SystemExit(1)


def main() -> None:
    RELAY.install()
    path = os.environ.get(SOCKET_ENV, "")
    if not path:
        start_cold(f"{SOCKET_ENV} is not set")
    try:
        sock = connect(path)
        hand_over(sock)
    except OSError as exc:
        start_cold(f"no launcher answers at {path} ({exc.strerror or exc})")
    follow(sock)


if __name__ == "__main__":
    main()
