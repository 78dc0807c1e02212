"""Fingerprints of what an environment's blocks and the deployments are made from, and where
they are kept (Variables in the Prefect server): see deployments/setup.py. Prefect is imported
only to write one."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from deployments.descriptions import load_description
from domain.errors import ReleaseError

ROOT = Path(__file__).resolve().parents[1]
BLOCK_CODE = ("blocks", "domain", "targets", "deployments")
FLOW_CODE = ("flows",)


def digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def code(folders: Iterable[str]) -> list[bytes]:
    """Each Python file under `folders`, by path and content, in a stable order."""
    files = sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))
    return [str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() for p in files]


def secret_files(value: Any) -> list[Path]:
    """Every `password_file` a description names, wherever it is."""
    if isinstance(value, dict):
        found = [Path(v) for k, v in value.items() if k == "password_file" and isinstance(v, str)]
        return found + [p for v in value.values() for p in secret_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in secret_files(v)]
    return []


def environment_fingerprint(name: str) -> str:
    return description_fingerprint(load_description(name))


def description_fingerprint(description: dict[str, Any]) -> str:
    secrets = [p.read_bytes() if p.is_file() else b"(missing)" for p in secret_files(description)]
    return digest([json.dumps(description, sort_keys=True).encode(), *secrets, *code(BLOCK_CODE)])


def deployments_fingerprint() -> str:
    variables = sorted(
        (k, v) for k, v in os.environ.items() if k.startswith("FM_") or k == "PREFECT_API_URL"
    )
    prefect_yaml = (ROOT / "prefect.yaml").read_bytes()
    return digest([prefect_yaml, json.dumps(variables).encode(), *code(FLOW_CODE)])


def variable_name(part: str) -> str:
    return f"fm-setup-{part}"


def api(path: str) -> httpx.Response:
    base = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not base:
        raise ReleaseError('PREFECT_API_URL is not set: run `eval "$(scripts/stack.sh env)"`')
    try:
        return httpx.get(f"{base}{path}", timeout=10)
    except httpx.HTTPError as exc:
        raise ReleaseError(f"the Prefect server at {base} does not answer ({exc}); "
                           "start it with `scripts/stack.sh up`") from exc  # fmt: skip


def stored(part: str) -> str | None:
    """The fingerprint of the last set-up of `part` on this server; None: none was recorded."""
    answer = api(f"/variables/name/{variable_name(part)}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    value = answer.json().get("value")
    return value if isinstance(value, str) else None


def remember(part: str, fingerprint: str) -> None:
    from prefect.variables import Variable

    Variable.set(variable_name(part), fingerprint, overwrite=True)
