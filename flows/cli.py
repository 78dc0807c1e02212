"""The command line: run one release and say where to watch it in the Prefect UI.

python -m flows.cli --environment local [--version V] [--build-arg K=V] [--dry-run]
"""

from __future__ import annotations

import argparse
import os

from blocks.environment import load_environment
from flows.release import release


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Release Flow Masters to an environment.")
    parser.add_argument("--environment", default="local")
    parser.add_argument("--version", default=None)
    parser.add_argument(
        "--source", default=None, help="the app's source folder (default: the environment's)"
    )
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dry-run", action="store_true", help="publish the plan, change nothing")
    parser.add_argument("--bake-seconds", type=float, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    state = release(
        args.environment,
        args.version,
        args.source,
        dict(arg.split("=", 1) for arg in args.build_arg),
        dry_run=args.dry_run,
        bake_seconds=args.bake_seconds,
        return_state=True,
    )
    api = os.environ.get("PREFECT_API_URL", "").removesuffix("/api")
    ui = os.environ.get("PREFECT_UI_URL") or api
    print(f"\nrelease {state.name}" + (f": {state.message}" if state.message else ""))
    print(f"watch it in the Prefect UI: {ui}/runs/flow-run/{state.state_details.flow_run_id}")
    if state.is_completed():
        for service in load_environment(args.environment).spec.ordered():
            print(f"{service.name}: {service.public_url}")
            if service.admin_path:
                print(f"{service.name} admin: {service.public_url.rstrip('/')}{service.admin_path}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    raise SystemExit(main())
