"""Set up what the main command needs, and only what changed since the last set-up.

    python -m deployments.setup local      # the environment's blocks, then prefect.yaml's deployments

Registering an environment saves its blocks (about 15 s here: Prefect regenerates the nested
blocks' schemas on every save) and `prefect deploy --all` takes about as long; run again with
nothing changed, both would redo the same work. Each part has a fingerprint of everything it is
made from:

- an environment: its description with ${VARS} expanded, the content of every file it names as
  a secret (as a digest), and the code that turns a description into blocks (blocks/, domain/,
  targets/, deployments/);
- the deployments: prefect.yaml, the `FM_*` and `PREFECT_API_URL` variables it may read, and the
  flows' code (their parameters become the deployments' schemas).

The fingerprint is kept in the Prefect server itself, as the Variables `fm-setup-environment-<name>` and `fm-setup-deployments`, so a new
or reset server has none and gets the whole set-up. A part is redone when its fingerprint
differs, and its Variable is written only after it succeeded. Prefect is imported only when
something has to be done: the import alone takes about 5 s here, so the check reads the Variable
over the server's REST API.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
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
    description = load_description(name)
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


def block_exists(name: str) -> bool:
    """Whether the environment's block is still there (someone may have deleted it in the UI)."""
    answer = api(f"/block_types/slug/flowmasters-environment/block_documents/name/{name}")
    return answer.status_code == 200


def remember(part: str, fingerprint: str) -> None:
    from prefect.variables import Variable

    Variable.set(variable_name(part), fingerprint, overwrite=True)


def set_up_environment(name: str) -> bool:
    """Register the environment's blocks if anything they are made from changed; True if done."""
    fingerprint = environment_fingerprint(name)
    if stored(f"environment-{name}") == fingerprint and block_exists(name):
        return False
    from deployments.register import register_environment

    register_environment(name, load_description(name))
    remember(f"environment-{name}", fingerprint)
    return True


def set_up_deployments() -> bool:
    """`prefect deploy --all` if prefect.yaml, its variables or the flows changed; True if done."""
    fingerprint = deployments_fingerprint()
    if stored("deployments") == fingerprint:
        return False
    prefect = Path(sys.executable).with_name("prefect")
    done = subprocess.run(
        [str(prefect), "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ReleaseError(f"`prefect deploy --all` failed:\n{(done.stdout + done.stderr)[-3000:]}")
    remember("deployments", fingerprint)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environments", nargs="+", help="environments to set up, e.g. local")
    args = parser.parse_args(argv)
    try:
        for name in args.environments:
            done = set_up_environment(name)
            print(f"environment '{name}': {'registered' if done else 'unchanged, not registered'}")
        done = set_up_deployments()
        print(f"deployments: {'deployed' if done else 'unchanged, not deployed'}")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
