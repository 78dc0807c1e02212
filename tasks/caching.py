"""The steps' cache policy: a step's inputs and source, with the environment counted by its name,
and the code of the results it returns.

An `Environment` is the whole block (services, checks, timeouts, nested block ids). Hashed whole,
an edit of the block between a failed run and its retry would turn a cache hit into a second
build or push, or into a second backup taken after the migrations: the one that counts is the
pre-release backup. What a result belongs to is the environment's name.

A cache record holds the step's result as it was pickled. After an upgrade changes the result
models (domain/results.py: a field added to PushedImage), an old record would load without the
field and fail the release far from its cause (seen: "'PushedImage' object has no attribute
'kept'"), so the models' code is part of the key: the step runs again instead (a build finds the
engine's layers, a push finds its tag in the registry, a backup finds the release's dump).
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from domain import results


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


def source_digest(module: ModuleType) -> str:
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()


@dataclass
class ResultModels(CachePolicy):
    """The code of the models the cached steps return (see the module's docstring)."""

    digest: str = field(default_factory=lambda: source_digest(results))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return self.digest


STEP_CACHE = (INPUTS - "env") + EnvironmentName() + TASK_SOURCE + ResultModels()
