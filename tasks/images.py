"""Steps 2 and 3: build the images (concurrently, cached on content) and push them."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

import targets
from targets.base import BuildSpec, BuiltImage, PushedImage
from targets.errors import ReleaseError
from tasks.policy import RETRIES


def ignore_patterns(context: Path) -> list[str]:
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """A path is ignored when it, or a folder above it, matches a .dockerignore pattern."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[i], pattern)
        for pattern in patterns
        if not pattern.startswith("!")
        for i, prefix in enumerate(prefixes)
    )


def digest_context(context: Path) -> str:
    """sha256 over every file the build would see (path, mode bit and content), in sorted order."""
    if not context.is_dir():
        raise ReleaseError(f"build context {context} does not exist")
    patterns = ignore_patterns(context)
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        relative = path.relative_to(context).as_posix()
        if relative != ".dockerignore" and is_ignored(relative, patterns):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


@task(name="fingerprint-source", cache_policy=NO_CACHE)
def fingerprint_source(context_dir: str) -> str:
    """The content digest of a build context: what the build's cache key is made of."""
    return digest_context(Path(context_dir))


@task(
    name="build-image",
    task_run_name="build-{build.service}",
    cache_policy=INPUTS + TASK_SOURCE,
    timeout_seconds=1800,
    **RETRIES,
)
async def build_image(environment: str, build: BuildSpec) -> BuiltImage:
    """Build one service's image. Cached on `build` (content digest, Dockerfile, build args).

    Async only so that the timeout can interrupt it: the blocking docker call runs in a thread.
    """
    return await asyncio.to_thread(lambda: targets.load_target(environment).build_image(build))


@task(
    name="push-image",
    task_run_name="push-{image.service}",
    cache_policy=INPUTS + TASK_SOURCE,
    timeout_seconds=1800,
    **RETRIES,
)
async def push_image(environment: str, image: BuiltImage) -> PushedImage:
    """Push under the release version; never replaces a different image under the same tag."""
    return await asyncio.to_thread(lambda: targets.load_target(environment).push_image(image))
