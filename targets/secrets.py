"""Secrets named in an environment description: read from a file or a variable, never the YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from domain.errors import ReleaseError


def read_secret(spec: dict[str, Any], what: str) -> str:
    """A secret from `password_file` or the variable named by `password_env`; never from YAML."""
    if "password_file" in spec:
        path = Path(spec["password_file"])
        if not path.is_file():
            raise ReleaseError(f"{what}: {path} does not exist; `scripts/stack.sh up` creates it")
        value = path.read_text().strip()
        if not value:
            raise ReleaseError(
                f"{what}: {path} is empty; `scripts/stack.sh up` writes the password"
            )
        return value
    if "password_env" in spec:
        value = os.environ.get(spec["password_env"])
        if not value:
            raise ReleaseError(f"{what}: set the environment variable {spec['password_env']}")
        return value
    raise ReleaseError(f"{what}: give password_file or password_env (never the password itself)")


def secret_env(names: dict[str, str]) -> dict[str, str]:
    """Variable -> value of the Prefect Secret block it names, read now (at the call), so the
    value never sits in an image, a description, a parameter or a log line."""
    from prefect.blocks.system import Secret

    values: dict[str, str] = {}
    for variable, block in names.items():
        try:
            secret = Secret.load(block, _sync=True)  # type: ignore[call-arg]
        except ValueError as exc:
            raise ReleaseError(
                f"{variable}: the Secret block '{block}' does not exist; register it with "
                "`python -m deployments.register` (from the description's `secrets`) or create "
                "it in the Prefect UI"
            ) from exc
        values[variable] = str(secret.get())
    return values
