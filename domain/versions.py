"""Release versions: what a version may look like, and which one a release gets.

A version is an image tag, so it follows the registry's tag rules; `latest` is never a release.
"""

from __future__ import annotations

import hashlib
import re

from domain.errors import ReleaseError
from domain.frozen import Frozen

# A Docker tag (what the registry accepts), minus `latest`, which is never a release.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class Source(Frozen):
    """The release's source folder and its git state."""

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
