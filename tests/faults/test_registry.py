"""A flaky registry: a fault proxy in front of the stack's real registry answers 503 to 30 % of
the requests (docker's pushes and the pipeline's own reads alike). Twenty releases in a row must
all succeed, through retries at the depth where the failure happens (the engine retries a
layer's upload, the pipeline retries its own requests; a push retried as a whole finds the
layers already there), and no layer is uploaded twice once it was."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.release import release
from testbed.scratch import create_environment, new_code, remove_environment
from tests.support.faultproxy import FaultProxy
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration

RELEASES = 20
SHARE = 0.3
UPLOAD_DONE = re.compile(
    r"^/v2/(?P<repository>.+)/blobs/uploads/[^?]+\?(?:.*&)?digest=(?P<digest>[^&]+)"
)


@pytest.fixture(scope="module")
def flaky_registry() -> Iterator[FaultProxy]:
    port = int(os.environ.get("FM_REGISTRY_PORT", "5000"))
    proxy = FaultProxy("127.0.0.1", port, share_503=SHARE, seed=11).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory, flaky_registry: FaultProxy):
    def through_the_proxy(_name: str, description: dict) -> None:
        description["target"]["registry"] = flaky_registry.address
        description["checks"]["window_seconds"] = 1  # the registry is under test, not the checks

    scratch = create_environment(
        "it-flaky", tmp_path_factory.mktemp("flaky"), edit=through_the_proxy
    )
    yield scratch
    remove_environment(scratch.name, scratch.database)


def test_twenty_releases_through_a_registry_failing_30_percent_of_requests(
    environment, flaky_registry
):
    started = time.monotonic()
    outcomes = []
    for i in range(1, RELEASES + 1):
        version = f"flaky-{i}"
        state = release(
            environment.name, version, str(new_code(Path(environment.source), version)),
            return_state=True,
        )  # fmt: skip
        outcomes.append(state.is_completed() or state.message)

    faulted = sum(e.faulted for e in flaky_registry.log)
    uploads = Counter(
        (m["repository"], m["digest"])
        for e in flaky_registry.log
        if e.method == "PUT" and e.status == 201 and (m := UPLOAD_DONE.match(e.path))
    )
    twice = {key: n for key, n in uploads.items() if n > 1}
    MATRIX.append(
        Row(
            fault=f"registry answers 503 to {SHARE:.0%} of requests",
            step=f"{RELEASES} releases (verify, push, plan)",
            end_state=f"{outcomes.count(True)}/{RELEASES} released",
            rows_lost=None,
            recovered_s=None,
            note=f"{faulted} of {len(flaky_registry.log)} requests failed; "
            f"{len(uploads)} layers uploaded, {len(twice)} twice; "
            f"{time.monotonic() - started:.0f} s in all",
        )
    )
    assert outcomes == [True] * RELEASES
    assert faulted > RELEASES, "the proxy failed too few requests to test anything"
    assert twice == {}, f"layers uploaded again after they were in the registry: {twice}"
