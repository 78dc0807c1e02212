"""The AWS runtime's tests run against the moto world of tests/support/moto_world.py (a moto
server on 127.0.0.1, never a real account); they need no local stack."""

from __future__ import annotations

import pytest

from tests.support.moto_world import (  # noqa: F401  (fixtures: no_secret_logged checks every log)
    aws,
    block,
    moto_url,
    no_secret_logged,
    target,
    world,
)


@pytest.fixture(scope="module", autouse=True)
def stack() -> None:
    """Overrides the integration conftest's check of the local stack: these tests need none."""
