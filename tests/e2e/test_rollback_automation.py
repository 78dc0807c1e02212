"""A broken release to `sandbox` is rolled back by the automation, with no failed request."""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks.load import SteadyLoad
from tests.e2e.conftest import (
    SANDBOX_FRONTEND,
    new_version,
    page_version,
    rolled_back_to,
    served_version,
    start,
    wait_final,
)


def page_ok(response) -> bool:
    return response.status_code == 200 and "content unavailable" not in response.text


def test_broken_release_is_rolled_back_by_itself_without_failed_requests():
    good = new_version("e2e-good")
    assert wait_final(start("release/sandbox", version=good).id).state.is_completed()
    assert served_version(SANDBOX_FRONTEND) == good
    since = datetime.now(UTC)

    # Health turns to 500 five seconds after start: the deploy passes, the smoke checks fail.
    with SteadyLoad(SANDBOX_FRONTEND + "/", rate=25, max_seconds=600, check=page_ok) as load:
        broken = wait_final(
            start(
                "release/sandbox",
                version=f"{good}-broken",
                build_args={"BREAK_AFTER_SECONDS": "5"},
            ).id
        )
        assert broken.state.is_failed()
        failed_at = broken.state.timestamp.timestamp()
        rollbacks = rolled_back_to(good, since)

    assert all(r.state.is_completed() for r in rollbacks), [r.state for r in rollbacks]
    window_start = min(r.start_time for r in rollbacks).timestamp()
    window_end = max(r.end_time for r in rollbacks).timestamp()
    during = [s for s in load.result.samples if window_start <= s[0] <= window_end]
    failed = [s for s in during if s[1] != 200 or "content unavailable" in s[2]]
    assert during, "the load ran during the rollback"
    assert failed == [], f"{len(failed)} of {len(during)} requests failed during the rollback"
    rate = len(during) / max(window_end - window_start, 1e-6)
    assert rate >= 20, f"load during the rollback was {rate:.1f} requests/s"
    back_at = next(
        t for t, status, body in load.result.samples if t > failed_at and page_version(body) == good
    )
    print(
        f"\nrollback: {len(rollbacks)} run(s); {len(during)} requests during it at {rate:.1f}/s, "
        f"{len(failed)} failed; previous version serving {back_at - failed_at:.1f}s after the "
        f"release failed (all load: {len(load.result.failures)} failed of {load.result.total})"
    )
