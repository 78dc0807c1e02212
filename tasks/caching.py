"""The steps' cache policy: a step's inputs and source, with the environment counted by its name.

An `Environment` is the whole block (services, checks, timeouts, nested block ids). Hashed whole,
an edit of the block between a failed run and its retry would turn a cache hit into a second
build or push, or into a second backup taken after the migrations: the one that counts is the
pre-release backup. What a result belongs to is the environment's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects


@dataclass
class EnvironmentName(CachePolicy):
    """The name of the task's `env` input (nothing when the task has none)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        env = inputs.get("env")
        return hash_objects(env.name, raise_on_failure=True) if env is not None else None


STEP_CACHE = (INPUTS - "env") + EnvironmentName() + TASK_SOURCE
