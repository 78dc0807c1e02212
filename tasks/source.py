"""Where the release's source comes from: a folder here, or a checkout of a git repository.

Which version a source gets is `domain.versions`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from domain.errors import ReleaseError
from domain.versions import Source

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(path: Path, *args: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def checkout(repository: str, ref: str) -> Path:
    """A shallow checkout of `ref`, at a path named by its commit (so build cache keys, which
    include the context path, are the same for every run of that commit)."""
    root = Path(tempfile.gettempdir()) / "flowmasters-checkouts"
    root.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=root))
    try:
        for args in (["init", "-q"], ["fetch", "-q", "--depth", "1", repository, ref]):
            result = subprocess.run(
                ["git", "-C", str(staging), *args], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise ReleaseError(
                    f"cannot fetch {ref!r} from {repository}: {result.stderr.strip()}; check the "
                    "repository URL and that the branch, tag or commit exists"
                )
        sha = _git(staging, "rev-parse", "FETCH_HEAD")
        final = root / str(sha)
        if not final.exists():
            subprocess.run(["git", "-C", str(staging), "checkout", "-q", "FETCH_HEAD"], check=True)
            staging.rename(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@task(name="resolve-source", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def resolve_source(source: str, git_repository: str | None = None, git_ref: str = "main") -> Source:
    """The source folder and its git state. With `git_repository`, `source` is a folder inside a
    fresh checkout of `git_ref`; otherwise a local folder (relative to this repository)."""
    path = checkout(git_repository, git_ref) / source if git_repository else Path(source)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_dir():
        raise ReleaseError(f"release source {path} does not exist or is not a folder")
    # The last commit that touched the source, not HEAD: unrelated commits keep the version.
    sha = _git(path, "log", "-1", "--format=%H", "--", ".") or None
    dirty = bool(_git(path, "status", "--porcelain", "--", ".")) if sha else True
    return Source(path=str(path), git_sha=sha, dirty=dirty)
