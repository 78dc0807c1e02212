"""The sample app's two build contexts carry one shared helper; the copies must not drift."""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).resolve().parents[3] / "examples" / "flowmasters"


def test_both_services_ship_the_same_stdlite():
    # Each service's build context holds its own copy (a context cannot reach outside itself).
    assert (APP / "backend" / "stdlite.py").read_bytes() == (
        APP / "frontend" / "stdlite.py"
    ).read_bytes()


def test_dockerfiles_take_the_base_image_as_a_build_argument_and_run_unprivileged():
    for service in ("backend", "frontend"):
        text = (APP / service / "Dockerfile").read_text()
        assert "ARG BASE_IMAGE=debian:bookworm-slim" in text
        assert "FROM ${BASE_IMAGE}" in text
        assert "USER 10001:10001" in text
        assert "HEALTHCHECK" in text
