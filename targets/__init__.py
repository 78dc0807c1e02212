"""Targets: the only code that talks to Docker or AWS. `load_target` picks one per run."""

from __future__ import annotations

from targets.base import EnvironmentSpec, Target


def load_target(environment: str) -> Target:
    """The target of `environment`, chosen by its block; everything above it is target-blind."""
    from blocks.environment import load_environment

    block = load_environment(environment)
    return block.target.connect(block.spec(environment))


def load_spec(environment: str) -> EnvironmentSpec:
    from blocks.environment import load_environment

    return load_environment(environment).spec(environment)
