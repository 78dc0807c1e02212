"""Set up what the main command needs, and only what changed since the last set-up.

    python -m deployments.setup local      # the environment's blocks, then prefect.yaml's deployments
    python -m deployments.setup            # every described environment, then the deployments
    python -m deployments.setup --force    # all of it in any case (after a `prefect deploy` by hand)

Registering an environment saves its blocks (about 15 s here: Prefect regenerates the nested
blocks' schemas on every save) and `prefect deploy --all` takes about as long; run again with
nothing changed, both would redo the same work. Each part has a fingerprint of everything it is
made from:

- an environment: its description with ${VARS} expanded, the content of every file it names as
  a secret (as a digest), and the code that turns a description into blocks (blocks/, domain/,
  targets/, deployments/);
- the deployments: prefect.yaml, the `FM_*` and `PREFECT_API_URL` variables it may read, and the
  flows' code (their parameters become the deployments' schemas).

Every registration records its environment's fingerprint (`register_environment` does, whoever
calls it), so blocks saved by `deployments.register` or by another checkout are never mistaken
for this one's. The fingerprint is kept in the Prefect server itself, as the Variables `fm-setup-environment-<name>` and `fm-setup-deployments`, so a new
or reset server has none and gets the whole set-up. A part is redone when its fingerprint
differs, and its Variable is written only after it succeeded. Prefect is imported only when
something has to be done: the import alone takes about 5 s here, so the check reads the Variable
over the server's REST API.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from deployments.descriptions import described, load_description
from deployments.fingerprints import (
    ROOT,
    api,
    deployments_fingerprint,
    environment_fingerprint,
    remember,
    stored,
)
from domain.errors import ReleaseError


def block_exists(name: str) -> bool:
    """Whether the environment's block is still there (someone may have deleted it in the UI)."""
    answer = api(f"/block_types/slug/flowmasters-environment/block_documents/name/{name}")
    return answer.status_code == 200


def set_up_environment(name: str, force: bool = False) -> bool:
    """Register the environment's blocks if anything they are made from changed; True if done.
    (register_environment records the fingerprint, however it is called.)"""
    fingerprint = environment_fingerprint(name)
    if not force and stored(f"environment-{name}") == fingerprint and block_exists(name):
        return False
    from deployments.register import register_environment

    register_environment(name, load_description(name))
    return True


def set_up_deployments(force: bool = False) -> bool:
    """`prefect deploy --all` if prefect.yaml, its variables or the flows changed; True if done.
    A `prefect deploy` run by hand is not seen: run this with --force after one."""
    fingerprint = deployments_fingerprint()
    if not force and stored("deployments") == fingerprint:
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
    parser.add_argument("environments", nargs="*", help="environments (default: all described)")
    parser.add_argument("--force", action="store_true", help="register and deploy in any case")
    args = parser.parse_args(argv)
    names = args.environments or described()
    try:
        for name in names:
            done = set_up_environment(name, args.force)
            print(f"environment '{name}': {'registered' if done else 'unchanged, not registered'}")
        done = set_up_deployments(args.force)
        print(f"deployments: {'deployed' if done else 'unchanged, not deployed'}")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
