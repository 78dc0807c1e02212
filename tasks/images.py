"""Steps 2 and 3: build the images (concurrently, cached on content) and push them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.environment import Environment
from domain.results import BuildSpec, BuiltImage, PushedImage
from targets.build_context import digest_context
from tasks.caching import STEP_CACHE
from tasks.retries import RETRIES

# Build and push are async only so that their timeout can interrupt them: Prefect cannot time out
# a sync task in a worker thread. The blocking docker call runs in a thread.
IMAGE_TASK = {"cache_policy": STEP_CACHE, "timeout_seconds": 1800, **RETRIES}


@task(name="fingerprint-source", cache_policy=NO_CACHE)
def fingerprint_source(context_dir: str, dockerfile: str = "Dockerfile") -> str:
    """The content digest of a build context: what the build's cache key is made of."""
    return digest_context(Path(context_dir), dockerfile)


@task(name="build-image", task_run_name="build-{build.service}", **IMAGE_TASK)
async def build_image(env: Environment, build: BuildSpec) -> BuiltImage:
    """Build one service's image. Cached on `build` (content digest, Dockerfile, build args)
    and the environment's name."""
    return await asyncio.to_thread(lambda: env.connect().build_image(build))


@task(name="push-image", task_run_name="push-{image.service}", **IMAGE_TASK)
async def push_image(env: Environment, image: BuiltImage) -> PushedImage:
    """Push under the release version; never replaces a different image under the same tag."""
    return await asyncio.to_thread(lambda: env.connect().push_image(image))
