"""How benchmarks/mttr.py reads the prober's samples into a time to recover."""

from __future__ import annotations

import pytest

from benchmarks.mttr import recovery


def sample(t: float, url: str, status: int = 200, version: str | None = "v1") -> dict:
    return {"t": t, "url": url, "status": status, "version": version}


def test_from_the_first_failure_to_the_last_url_answering_the_good_version_again():
    samples = [
        sample(0.0, "h"),
        sample(0.0, "/", version=None),
        sample(1.0, "h", version="v2"),  # the new version, still healthy
        sample(1.0, "/", version=None),
        sample(2.0, "h", status=500, version="v2"),  # the first failure
        sample(2.0, "/", version=None),
        sample(2.5, "h", status=500, version="v2"),  # the last bad answer
        sample(2.6, "/", version=None),
        sample(2.7, "h"),  # v1 again
        sample(3.0, "/", version=None),
    ]

    assert recovery(samples, "v1") == (2.0, 2.7)


def test_a_url_still_on_the_new_version_is_not_recovered():
    samples = [
        sample(1.0, "h", status=500, version="v2"),
        sample(1.0, "api", version="v2"),
        sample(1.5, "h"),
        sample(1.6, "api", version="v2"),  # a 200, but the broken version's
        sample(1.9, "api"),
        sample(2.0, "h"),
    ]

    assert recovery(samples, "v1") == (1.0, 2.0)


def test_nothing_failed_is_none_and_never_recovering_is_an_error():
    assert recovery([sample(0.0, "h"), sample(1.0, "h")], "v1") is None
    with pytest.raises(ValueError, match="never answered v1 again"):
        recovery([sample(0.0, "h"), sample(1.0, "h", status=500)], "v1")
