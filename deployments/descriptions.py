"""Environment descriptions (YAML) read and expanded, without Prefect: `deployments.setup`
fingerprints them before deciding whether anything must be registered, and importing Prefect
alone takes seconds."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from domain.errors import ReleaseError

HERE = Path(__file__).resolve().parent / "environments"
DEFAULTS = {
    "FM_STACK_DIR": "/var/lib/flowmasters",
    "FM_REGISTRY_PORT": "5000",
    "FM_POSTGRES_PORT": "5433",
    "FM_CDN_ADMIN_PORT": "6082",  # Varnish's admin port (scripts/stack.sh)
    "FM_REDIS_PORT": "6379",  # the frontend's shared cache (scripts/stack.sh)
    "FM_PROMETHEUS_PORT": "9090",  # the stack's monitoring (scripts/stack.sh)
    "FM_BASE_IMAGE": "flowmasters/base:bookworm",
    "FM_NODE_IMAGE": "flowmasters/node:24.19.0",  # scripts/stack.sh makes it from a wheel
    "FM_AWS_REGION": "eu-west-1",
    "FM_AWS_ENDPOINT_URL": "",  # empty: AWS itself; scripts/stack.sh sets its moto stand-in
    # A stack change can take CloudFormation half an hour; scripts/stack.sh lowers this for its
    # stand-in, which cannot create the whole stack and would otherwise keep a run waiting.
    "FM_AWS_INFRASTRUCTURE_TIMEOUT": "3600",
    # sandbox's addresses (the end-to-end tier's stand-ins); the suite's stack moves them
    "FM_SANDBOX_URL": "http://127.0.0.1:8090",
    "FM_SANDBOX_API_URL": "http://127.0.0.1:8091",
    "FM_SANDBOX_PORT_BASE": "18120",
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
        known = ", ".join(described())
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


def described() -> list[str]:
    """The environments described in deployments/environments, by name."""
    return sorted(p.stem for p in HERE.glob("*.yaml"))
