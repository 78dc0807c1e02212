"""The build context as Docker sees it, and its content digest (the build's cache key).

Which files a build receives is decided by docker-py's own .dockerignore matcher, so the digest
covers exactly what the build sees: the Dockerfile always, ignored files never.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from docker.utils.build import exclude_paths

from domain.errors import ReleaseError


def ignore_patterns(context: Path) -> list[str]:
    """The .dockerignore lines as docker-py reads them (stripped; no blanks or comments)."""
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def included_files(context: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Relative paths of the files a build of `context` receives, sorted."""
    if not context.is_dir():
        raise ReleaseError(f"build context {context} does not exist or is not a folder")
    paths = exclude_paths(str(context), ignore_patterns(context), dockerfile=dockerfile)
    return sorted(p for p in paths if (context / p).is_file())


def digest_context(context: Path, dockerfile: str = "Dockerfile") -> str:
    """sha256 over every file the build receives (path, exec bit, content), in sorted order."""
    digest = hashlib.sha256()
    for relative in included_files(context, dockerfile):
        path = context / relative
        digest.update(relative.encode() + b"\0")
        digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()
