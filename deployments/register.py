"""Turn the environment descriptions in deployments/environments/*.yaml into Prefect blocks.

    python -m deployments.register            # every environment described in the folder
    python -m deployments.register local      # just one

Block documents per environment NAME: NAME (Flowmasters Environment) and the blocks its target
saves from the description's `target:` section (targets/<kind>/description.py). Docker host:
NAME-docker-host, NAME-docker, NAME-database (password as a secret); AWS: NAME-aws-target,
NAME-aws (AwsCredentials, keys as secrets).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client

from blocks.environment import FlowmastersEnvironment
from domain.errors import ReleaseError
from flows.lock import lock_name
from targets import registry

HERE = Path(__file__).resolve().parent / "environments"
DEFAULTS = {
    "FM_STACK_DIR": "/var/lib/flowmasters",
    "FM_REGISTRY_PORT": "5000",
    "FM_POSTGRES_PORT": "5433",
    "FM_BASE_IMAGE": "flowmasters/base:bookworm",
    "FM_AWS_REGION": "eu-west-1",
    "FM_AWS_ENDPOINT_URL": "",  # empty: AWS itself; scripts/stack.sh sets its moto stand-in
    # A stack change can take CloudFormation half an hour; scripts/stack.sh lowers this for its
    # stand-in, which cannot create the whole stack and would otherwise keep a run waiting.
    "FM_AWS_INFRASTRUCTURE_TIMEOUT": "3600",
}


def expand(value: Any) -> Any:
    """Replace ${VAR} in every string; an unset variable without a default is an error."""
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise ReleaseError(f"${{{name}}} is used in an environment description but is not set")

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lookup, value)


def load_description(name: str) -> dict[str, Any]:
    path = HERE / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in HERE.glob("*.yaml")))
        raise ReleaseError(f"no description of environment '{name}' at {path} (known: {known})")
    return expand(yaml.safe_load(path.read_text()))


def register_environment(name: str, description: dict[str, Any]) -> FlowmastersEnvironment:
    """Create or update the blocks of one environment; returns the environment block."""
    target = description["target"]
    kind = registry.kind_of(target.get("type"), name)
    environment = FlowmastersEnvironment(
        target=kind.register(name, target),
        services=description["services"],
        checks=description.get("checks", {}),
        build_args=description.get("build_args", {}),
    )
    environment.spec(name)  # validates the whole description before it is saved
    environment.save(name, overwrite=True)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(lock_name(name), limit=1)
    return environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="environments (default: all described)")
    args = parser.parse_args(argv)
    FlowmastersEnvironment.register_type_and_schema()  # and, recursively, every target's blocks
    names = args.names or sorted(p.stem for p in HERE.glob("*.yaml"))
    try:
        for name in names:
            register_environment(name, load_description(name))
            print(f"registered environment '{name}'")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
