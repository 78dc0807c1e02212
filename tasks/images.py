"""Steps 2 and 3: build the images (concurrently, cached on content) and push them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

import targets
from targets.base import BuildSpec, BuiltImage, PushedImage
from targets.context import digest_context
from tasks.policy import RETRIES


@task(name="fingerprint-source", cache_policy=NO_CACHE)
def fingerprint_source(context_dir: str, dockerfile: str = "Dockerfile") -> str:
    """The content digest of a build context: what the build's cache key is made of."""
    return digest_context(Path(context_dir), dockerfile)


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
