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
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from blocks.environment import FlowmastersEnvironment
from domain.errors import ReleaseError
from flows.lock import lock_name
from targets import registry
from targets.secrets import read_secret

HERE = Path(__file__).resolve().parent / "environments"
DEFAULTS = {
    "FM_STACK_DIR": "/var/lib/flowmasters",
    "FM_REGISTRY_PORT": "5000",
    "FM_POSTGRES_PORT": "5433",
    "FM_BASE_IMAGE": "flowmasters/base:bookworm",
    "FM_NODE_IMAGE": "flowmasters/node:24.19.0",  # scripts/stack.sh makes it from a wheel
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


SECTIONS = {"name", "target", "services", "checks", "build_args", "source", "secrets"}


def load_description(name: str) -> dict[str, Any]:
    path = HERE / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in HERE.glob("*.yaml")))
        raise ReleaseError(
            f"no description of environment '{name}' at {path} (known: {known}); a description "
            "kept elsewhere is registered with --file PATH"
        )
    return read_description(path)


def read_description(path: Path) -> dict[str, Any]:
    """A description file, its ${VARS} expanded. A relative `source` in a file kept elsewhere
    (beside a team's app) is made absolute from the file's folder; this repository's own
    descriptions keep theirs relative to its root, which is also where a run with
    `git_repository` looks in its checkout."""
    if not path.is_file():
        raise ReleaseError(f"no environment description at {path}: give the YAML file's path")
    description = expand(yaml.safe_load(path.read_text()) or {})
    if not isinstance(description, dict):
        raise ReleaseError(f"{path} is not a mapping of sections ({', '.join(sorted(SECTIONS))})")
    unknown = sorted(set(description) - SECTIONS)
    if unknown:
        raise ReleaseError(
            f"{path}: unknown section(s) {unknown}; the sections are {sorted(SECTIONS)}"
        )
    source = description.get("source")
    if source and not Path(source).is_absolute() and path.resolve().parent != HERE:
        description["source"] = str((path.resolve().parent / source).resolve())
    return description


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
    names = args.names or ([] if args.file else sorted(p.stem for p in HERE.glob("*.yaml")))
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
