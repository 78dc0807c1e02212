"""Turn environment descriptions (YAML) into Prefect blocks.

    python -m deployments.register                  # every description in deployments/environments
    python -m deployments.register local            # just one of them
    python -m deployments.register --file ../my-app/deploy/prod.yaml   # a description kept
                                                    # beside a team's own app (name: file stem,
                                                    # or the file's `name:`)

Block documents per environment NAME: NAME (Flowmasters Environment) and the blocks its target
saves from the description's `target:` section (targets/<kind>/description.py). Docker host:
NAME-docker-host, NAME-docker, NAME-database (password as a secret); AWS: NAME-aws-target,
NAME-aws (AwsCredentials, keys as secrets). Each entry of `secrets:` becomes a Secret block of
that name (read from a file or a variable, never from the YAML). A relative `source:` is taken
relative to the description's folder, so an app's description can name its own checkout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from blocks.environment_block import FlowmastersEnvironment
from deployments import fingerprints
from deployments.descriptions import (  # noqa: F401  (expand and DEFAULTS: used by the tests)
    DEFAULTS,
    HERE,
    described,
    expand,
    load_description,
    read_description,
)
from domain.errors import ReleaseError
from flows.lock import lock_name
from targets import registry
from targets.secrets import read_secret


def register_secrets(name: str, secrets: dict[str, Any]) -> None:
    """Each `secrets:` entry as a Secret block (its value from password_file or password_env)."""
    for block, where in (secrets or {}).items():
        if not isinstance(where, dict):
            raise ReleaseError(
                f"environment '{name}': secret '{block}' must name password_file or "
                "password_env, never hold the value"
            )
        Secret(value=read_secret(where, f"environment '{name}' secret '{block}'")).save(
            block, overwrite=True
        )


def register_environment(name: str, description: dict[str, Any]) -> FlowmastersEnvironment:
    """Create or update the blocks of one environment; returns the environment block."""
    fingerprint = fingerprints.description_fingerprint(description)  # before anything may change it
    target = description["target"]
    kind = registry.kind_of(target.get("type"), name)
    environment = FlowmastersEnvironment(
        target=kind.register(name, target),
        services=description["services"],
        checks=description.get("checks", {}),
        build_args=description.get("build_args", {}),
        source=description.get("source"),
    )
    register_secrets(name, description.get("secrets", {}))
    environment.spec(name)  # validates the whole description before it is saved
    environment.save(name, overwrite=True)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(lock_name(name), limit=1)
    # What the blocks were made from: `deployments.setup` skips a registration that would
    # change nothing.
    fingerprints.remember(f"environment-{name}", fingerprint)
    return environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="environments (default: all described)")
    parser.add_argument(
        "--file", action="append", default=[], type=Path, metavar="PATH",
        help="a description kept anywhere (e.g. beside the app); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    FlowmastersEnvironment.register_type_and_schema()  # and, recursively, every target's blocks
    names = args.names or ([] if args.file else described())
    try:
        found = [(n, load_description(n)) for n in names]
        for path in args.file:
            description = read_description(path)
            found.append((str(description.pop("name", None) or path.stem), description))
        for name, description in found:
            register_environment(name, description)
            print(f"registered environment '{name}'")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
