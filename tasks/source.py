"""Where the release's source comes from, and which version it is."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from targets.base import VERSION_PATTERN, Frozen
from targets.errors import ReleaseError

REPO_ROOT = Path(__file__).resolve().parent.parent


class Source(Frozen):
    path: str
    git_sha: str | None
    dirty: bool


def normalize_version(requested: str | int | None) -> str | None:
    """A version as a string; digits-only versions (a numeric git SHA, `2`) stay strings."""
    if requested is None:
        return None
    version = str(requested).strip()
    if not version:
        return None
    if version == "latest" or not VERSION_PATTERN.match(version):
        raise ReleaseError(
            f"version {version!r} is not usable as an image tag: use 1-128 letters, digits, '.', "
            "'_' or '-', starting with a letter, digit or '_', and never 'latest'"
        )
    return version


def choose_version(requested: str | int | None, source: Source, content_digest: str) -> str:
    """The requested version, else the source's git SHA, else one made from the content digest.

    A dirty work tree never borrows the commit's SHA: that tag would then name different images.
    """
    version = normalize_version(requested)
    if version:
        return version
    if source.git_sha and not source.dirty:
        return source.git_sha[:12]
    return "dev-" + content_digest.removeprefix("sha256:")[:12]


def combined_digest(digests: dict[str, str]) -> str:
    """One digest over every service's context digest: any service's change changes it."""
    joined = "\n".join(f"{name}={digests[name]}" for name in sorted(digests))
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def _git(path: Path, *args: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


@task(name="resolve-source", cache_policy=NO_CACHE)
def resolve_source(source: str) -> Source:
    """The source folder (relative paths are from the repository root) and its git state."""
    path = Path(source)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_dir():
        raise ReleaseError(f"release source {path} does not exist or is not a folder")
    # The last commit that touched the source, not HEAD: unrelated commits keep the version.
    sha = _git(path, "log", "-1", "--format=%H", "--", ".") or None
    dirty = bool(_git(path, "status", "--porcelain", "--", ".")) if sha else True
    return Source(path=str(path), git_sha=sha, dirty=dirty)
