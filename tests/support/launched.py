"""What the launcher's tests run in place of Prefect's engine (`python -m launcher.warm SOCKET
--module tests.support.launched`): it reports where it runs and does what FM_TEST_ACTION says.

    exit N     print its pid, parent pid, folder and FM_TEST_VALUE, echo a line of stdin to
               stderr, exit N (printing "drained" from a threading exit callback, where Prefect's
               log and event services send what they hold, and "atexit" from an atexit one)
    wait       print its pid, then wait for a signal; SIGTERM prints "terminated" and exits 3
    kill-self  print its pid, then kill itself with SIGKILL
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time


def terminated(_signum: int, _frame: object) -> None:
    print("terminated", flush=True)
    raise SystemExit(3)


def main() -> None:
    action, _, argument = os.environ.get("FM_TEST_ACTION", "exit 0").partition(" ")
    if action == "wait":  # ready for SIGTERM before it says its pid: a test signals after that
        signal.signal(signal.SIGTERM, terminated)
    print(f"pid={os.getpid()} ppid={os.getppid()}", flush=True)
    if action == "exit":
        threading._register_atexit(lambda: print("drained", flush=True))  # type: ignore[attr-defined]
        atexit.register(lambda: print("atexit", flush=True))
        print(f"cwd={os.getcwd()} value={os.environ.get('FM_TEST_VALUE')}", flush=True)
        print(f"stdin={sys.stdin.readline().strip()}", file=sys.stderr, flush=True)
        raise SystemExit(int(argument))
    if action == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "wait":
        deadline = time.monotonic() + 60  # bounded: a test that forgot it ends anyway
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise SystemExit(4)


if __name__ == "__main__":
    main()
