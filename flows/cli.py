"""The command line: release to an environment and follow the release until it ends.

    python -m flows.cli --environment local [--version V] [--source DIR] [--build-arg K=V]
                        [--dry-run] [--bake-seconds N] [--here]

The release is a run of the deployment `release/<environment>` (prefect.yaml), as one started
from the UI or from CI: the stack's worker starts it through the warm launcher in well under a
second, the deployment lets one release run at a time, and if its process dies the rollback
automation takes over (a crashed run outside a deployment triggers nothing). This process only
starts the run and prints its logs until it ends, over the server's REST API: importing Prefect
would cost it 2-5 s. Ctrl-C stops following, not the release, which is never stopped half done
by a keystroke; the message says how to cancel it.

With --here, or when the server has no deployment for the environment (one registered with
`deployments.register --file` and not in prefect.yaml), the flow runs in this process instead.
Only the options given are sent, so a deployment's own defaults (staging's bake window, its git
repository) stay in force.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from domain.retrying import retrying, spread

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
POLL_SECONDS = 0.5
FOLLOW_HOURS = 3  # the flow's own limit is 1 h, plus up to 1 h per approval it waits for
LOG_DRAIN_SECONDS = 10  # logs reach the server a moment after the run's last state
LOG_LOOKBACK_SECONDS = 10
LOG_PAGE = 200
LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
# Waits before each retry of one request to the server (jittered by half either way): about 60 s
# in all, so a server restarting (14 s here, longer on a busy machine), or a proxy in front of it
# answering 503 for a moment, costs the command a pause instead of a traceback while the release
# goes on. Even the shortest draw waits 32 s.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0)
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Release Flow Masters to an environment.")
    parser.add_argument("--environment", default="local")
    parser.add_argument("--version", default=None)
    parser.add_argument(
        "--source", default=None, help="the app's source folder (default: the environment's)"
    )
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dry-run", action="store_true", help="publish the plan, change nothing")
    parser.add_argument("--bake-seconds", type=float, default=None)
    parser.add_argument(
        "--here", action="store_true", help="run the flow in this process, not through the worker"
    )
    return parser.parse_args(argv)


def parameters_of(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's parameters the person gave. A version stays a string (an all-digit git SHA
    sent as a number would fail the flow's validation); a local source folder is made absolute,
    since the worker runs elsewhere in the file system."""
    parameters: dict[str, Any] = {"environment": args.environment}
    if args.version is not None:
        parameters["version"] = str(args.version)
    if args.source is not None:
        local = Path(args.source)
        parameters["source"] = str(local.resolve()) if local.exists() else args.source
    if args.build_arg:
        parameters["build_args"] = dict(arg.split("=", 1) for arg in args.build_arg)
    if args.dry_run:
        parameters["dry_run"] = True
    if args.bake_seconds is not None:
        parameters["bake_seconds"] = args.bake_seconds
    return parameters


def retry_delays(draws: list[float]) -> list[float]:
    """The waits before each retry, given one uniform draw in [0, 1) per retry."""
    return spread(RETRY_DELAYS, draws)


def answer_failure(answer: httpx.Response) -> str | None:
    """Why an answer may be different if the request is sent again (a 503), or None."""
    return f"answered {answer.status_code}" if answer.status_code in RETRY_STATUSES else None


def tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Server:
    """The few REST calls the command needs, each retried (bounded, with jitter) while the server
    is unavailable for a moment. Starting a run carries an idempotency key, so a retry after an
    answer that was lost cannot start a second release."""

    def __init__(self, api_url: str, sleep: Any = time.sleep) -> None:
        self.client = httpx.Client(base_url=api_url.rstrip("/"), timeout=30)
        self.ui = (os.environ.get("PREFECT_UI_URL") or api_url).removesuffix("/api")
        self.sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on RETRY_DELAYS while the server answers 429/502/503/504 or
        the connection fails; each retry is told on stderr."""
        return retrying(
            lambda: self.client.request(method, path, **kwargs),
            f"the Prefect server ({method} {path})",
            delays=RETRY_DELAYS,
            warn=tell,
            transient=(httpx.TransportError,),
            failed=answer_failure,
            sleep=self.sleep,
        )

    def deployment_id(self, name: str) -> str | None:
        answer = self.request("GET", f"/deployments/name/{name}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["id"]

    def start(self, deployment_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        answer = self.request(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            json={"parameters": parameters, "idempotency_key": f"cli-{uuid.uuid4()}"},
        )
        answer.raise_for_status()
        return answer.json()

    def flow_run(self, run_id: str) -> dict[str, Any]:
        answer = self.request("GET", f"/flow_runs/{run_id}")
        answer.raise_for_status()
        return answer.json()

    def logs(self, run_id: str, after: str | None, offset: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"flow_run_id": {"any_": [run_id]}}
        if after:
            query["timestamp"] = {"after_": after}
        answer = self.request(
            "POST",
            "/logs/filter",
            json={"logs": query, "sort": "TIMESTAMP_ASC", "limit": LOG_PAGE, "offset": offset},
        )
        answer.raise_for_status()
        return answer.json()

    def task_run_names(self, ids: list[str]) -> dict[str, str]:
        answer = self.request(
            "POST",
            "/task_runs/filter",
            json={"task_runs": {"id": {"any_": ids}}, "limit": len(ids)},
        )
        answer.raise_for_status()
        return {run["id"]: run["name"] for run in answer.json()}

    def services(self, environment: str) -> list[dict[str, Any]]:
        answer = self.request(
            "GET", f"/block_types/slug/flowmasters-environment/block_documents/name/{environment}"
        )
        return answer.json().get("data", {}).get("services", []) if answer.is_success else []

    def link(self, run_id: str) -> str:
        return f"{self.ui}/runs/flow-run/{run_id}"


class LogPrinter:
    """Prints a run's log lines once each, as they reach the server. The worker and the run's
    process send their logs in separate batches, so a line may arrive after a later one: each
    query looks back LOG_LOOKBACK_SECONDS before the newest line seen, and what was printed is
    skipped by id."""

    def __init__(self, server: Server, run_id: str) -> None:
        self.server, self.run_id = server, run_id
        self.seen: set[str] = set()
        self.task_names: dict[str, str] = {}
        self.newest: datetime | None = None
        self.finished = False  # the flow's own last line ("Finished in state ...") was printed

    def print_new(self) -> int:
        after = self.newest - timedelta(seconds=LOG_LOOKBACK_SECONDS) if self.newest else None
        printed, offset = 0, 0
        while True:
            page = self.server.logs(self.run_id, after.isoformat() if after else None, offset)
            new = [log for log in page if log["id"] not in self.seen]
            unnamed = {log["task_run_id"] for log in new if log.get("task_run_id")}
            unnamed -= self.task_names.keys()
            if unnamed:
                self.task_names |= self.server.task_run_names(sorted(unnamed))
            for log in new:
                self.show(log)
            printed += len(new)
            if len(page) < LOG_PAGE:
                return printed
            offset += len(page)

    def show(self, log: dict[str, Any]) -> None:
        self.seen.add(log["id"])
        stamp = datetime.fromisoformat(log["timestamp"].replace("Z", "+00:00"))
        self.newest = max(self.newest or stamp, stamp)
        if log.get("task_run_id") is None and log["message"].startswith("Finished in state"):
            self.finished = True
        level = LEVELS.get(log["level"], str(log["level"]))
        task = self.task_names.get(log.get("task_run_id") or "")
        where = f"Task run '{task}' - " if task else ""
        print(f"{stamp:%H:%M:%S.%f}"[:12] + f" | {level:<7} | {where}{log['message']}", flush=True)


def waiting_for(state: dict[str, Any]) -> str | None:
    """What a run that is not going on is waiting for, in a person's words, or None."""
    if state["type"] == "PAUSED":
        return "waiting for a person's approval"
    if state["name"] == "Late":
        return (
            "waiting for a worker: none has taken the run since it was due (Late); is the "
            "deployment's worker running? `scripts/stack.sh status` says, `scripts/stack.sh up` "
            "starts it"
        )
    if state["name"] == "AwaitingConcurrencySlot":
        return (
            "waiting for its turn: the deployment runs one release at a time and another is "
            "in progress (AwaitingConcurrencySlot)"
        )
    return None


def follow(server: Server, run_id: str) -> dict[str, Any]:
    """Print the run's logs until it ends (bounded); its final state."""
    printer = LogPrinter(server, run_id)
    deadline = time.monotonic() + FOLLOW_HOURS * 3600
    said_waiting: str | None = None
    while time.monotonic() < deadline:
        printer.print_new()
        state = server.flow_run(run_id)["state"]
        if state["type"] in FINAL:
            # The run's process sends its last lines as it exits; a killed one sends none.
            drain_until = time.monotonic() + LOG_DRAIN_SECONDS
            while not printer.finished and time.monotonic() < drain_until:
                time.sleep(POLL_SECONDS / 2)
                printer.print_new()
            return state
        waiting = waiting_for(state)
        if waiting and waiting != said_waiting:
            print(f"{waiting}: {server.link(run_id)}", flush=True)
        said_waiting = waiting
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"still running after {FOLLOW_HOURS} h; follow it at {server.link(run_id)}")


def print_addresses(services: list[dict[str, Any]]) -> None:
    for service in sorted(services, key=lambda s: s.get("order", 0)):
        print(f"{service['name']}: {service['public_url']}")
        if service.get("admin_path"):
            print(
                f"{service['name']} admin: {service['public_url'].rstrip('/')}{service['admin_path']}"
            )
    if port := os.environ.get("FM_PROMETHEUS_PORT"):  # the stack's monitoring (scripts/stack.sh)
        print(f"monitoring (Prometheus): http://127.0.0.1:{port}")


def through_the_worker(server: Server, deployment_id: str, args: argparse.Namespace) -> int:
    run = server.start(deployment_id, parameters_of(args))
    print(f"release run {run['name']} of release/{args.environment}: {server.link(run['id'])}")
    try:
        state = follow(server, run["id"])
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the release goes on: {server.link(run['id'])}\n"
            f"to stop it: prefect flow-run cancel {run['id']}"
        )
        return 130
    message = f": {state['message']}" if state.get("message") else ""
    print(f"\nrelease {state['name']}{message}")
    print(f"watch it in the Prefect UI: {server.link(run['id'])}")
    if state["type"] == "COMPLETED":
        print_addresses(server.services(args.environment))
    return 0 if state["type"] == "COMPLETED" else 1


def here(args: argparse.Namespace) -> int:
    """The flow in this process (Prefect imported here)."""
    from flows.release import release

    parameters = parameters_of(args)
    state = release(**parameters, return_state=True)
    server = Server(os.environ.get("PREFECT_API_URL", ""))
    run_id = str(state.state_details.flow_run_id)
    print(f"\nrelease {state.name}" + (f": {state.message}" if state.message else ""))
    print(f"watch it in the Prefect UI: {server.link(run_id)}")
    if state.is_completed():
        print_addresses(server.services(args.environment))
    return 0 if state.is_completed() else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        print('error: PREFECT_API_URL is not set (eval "$(scripts/stack.sh env)")', file=sys.stderr)
        return 2
    server = Server(api_url)
    if args.here:
        return here(args)
    try:
        deployment_id = server.deployment_id(f"release/{args.environment}")
    except httpx.HTTPError as exc:
        print(
            f"error: the Prefect server at {api_url} does not answer ({exc}); start it with scripts/stack.sh up",
            file=sys.stderr,
        )
        return 2
    if deployment_id is None:
        print(
            f"no deployment release/{args.environment} in the Prefect server: releasing in this process"
        )
        return here(args)
    return through_the_worker(server, deployment_id, args)


if __name__ == "__main__":
    raise SystemExit(main())
