"""One release or rollback at a time per environment.

Deployments also carry a concurrency limit, but this lock holds for any run (UI, CLI, a direct
call) and between a release and a rollback of the same environment. It is a Prefect global
concurrency limit named `flowmasters-env-<environment>` (limit 1, created by
`deployments/register.py`), taken with a lease that Prefect renews while the run lives and lets
expire when the process dies, so a crashed run does not wedge the environment.

A lease that outlives its holder would still hold the lock for up to LEASE_SECONDS: after a
release's process is killed mid-switch, users would get a new backend behind an old frontend that
long before the rollback could start. So a release records its lease's id, and a rollback frees
it at once when the release's run has ended (Crashed: its process is gone) at least
ENDED_GRACE_SECONDS ago. The lock is taken through Prefect's own acquire/renew/release
(`prefect.concurrency._sync`, what `concurrency()` is made of), because `concurrency()` does not
give the lease's id.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, StateType
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency._events import (
    emit_concurrency_acquisition_events,
    emit_concurrency_release_events,
)
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from domain.errors import ReleaseError
from domain.records import ReleaseRecord

# Prefect renews the lease while the run lives; after a crash the lock is free again within this.
LEASE_SECONDS = 60
# A run that ended this long ago holds nothing any more: the worker reports Crashed once the
# run's process has exited (the warm launcher kills the run's child as its command dies).
ENDED_GRACE_SECONDS = 3
ENDED = {"CRASHED", "FAILED", "CANCELLED", "COMPLETED"}
DIED = {"CRASHED", "CANCELLED"}  # may have ended without releasing what they held


def lock_name(environment: str) -> str:
    return f"flowmasters-env-{environment}"


@contextmanager
def environment_lock(environment: str, wait_seconds: float, what: str) -> Iterator[str]:
    """Hold the environment's lock; waits up to `wait_seconds`, then refuses with a message.
    Yields the lease's id (a release records it: see the module's docstring)."""
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None
    try:
        acquired = acquire_concurrency_slots_with_lease(
            [lock_name(environment)],
            1,
            timeout_seconds=wait_seconds,
            lease_duration=LEASE_SECONDS,
            strict=True,
            holder=holder,
        )
    except ConcurrencySlotAcquisitionError as exc:
        raise ReleaseError(
            f"the lock of environment '{environment}' ({lock_name(environment)}) does not "
            f"exist; create it with `python -m deployments.register {environment}`"
        ) from exc
    except TimeoutError as exc:
        raise ReleaseError(
            f"another release or rollback of '{environment}' is running, so this {what} was "
            f"refused after waiting {wait_seconds:.0f}s; nothing was changed. Let it finish "
            "(see the Prefect UI), then run again"
        ) from exc
    emitted = emit_concurrency_acquisition_events(acquired.limits, 1)
    try:
        with maintain_concurrency_lease(
            acquired.lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=True
        ):
            yield str(acquired.lease_id)
    finally:
        release_concurrency_slots_with_lease(acquired.lease_id)
        emit_concurrency_release_events(acquired.limits, 1, emitted)


def holder_is_gone(state_type: str | None, ended_seconds_ago: float | None) -> bool:
    """Whether a release run can hold nothing any more: it ended, long enough ago."""
    return (
        state_type in ENDED
        and ended_seconds_ago is not None
        and ended_seconds_ago >= ENDED_GRACE_SECONDS
    )


def wait_before_freeing(state_type: str | None, ended_seconds_ago: float | None) -> float | None:
    """Seconds to wait before freeing a release run's lease, or None: leave it. Only a run that
    died (Crashed, or Cancelled by a kill) can have ended without releasing it; it is freed once
    ENDED_GRACE_SECONDS have passed since, so its process is surely gone."""
    if state_type not in DIED or ended_seconds_ago is None:
        return None
    return max(0.0, ENDED_GRACE_SECONDS - ended_seconds_ago)


def run_state(flow_run_id: str) -> tuple[str, str, str, float] | None:
    """(run name, state type, state name, seconds since that state) of a flow run, if any."""
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return None
    if run.state is None:
        return None
    ago = (datetime.now(UTC) - run.state.timestamp).total_seconds()
    return run.name, run.state.type.value, run.state.name, ago


def ended_run(record: ReleaseRecord | None) -> tuple[str, str, float] | None:
    """(name, state name, seconds since) of `record`'s release run when it has ended long enough
    ago to hold nothing (`holder_is_gone`), else None."""
    found = run_state(record.flow_run_id) if record is not None and record.flow_run_id else None
    if found is None or not holder_is_gone(found[1], found[3]):
        return None
    name, _, state, ago = found
    return name, state, ago


def free_lock_of_ended_release(
    record: ReleaseRecord | None, sleep: Callable[[float], None] = time.sleep
) -> str | None:
    """Release the environment lock's lease of `record`'s run when that run died while it held
    it (its record still says `started`); what was done, or None."""
    if record is None or not record.lock_lease or not record.flow_run_id:
        return None
    if record.status != "started":
        return None  # the run recorded its end: its process released its lease itself
    found = run_state(record.flow_run_id)
    wait = wait_before_freeing(found[1], found[3]) if found else None
    if found is None or wait is None:
        return None
    name, _, state, ago = found
    if wait:
        get_run_logger().info(f"release run {name} ended {state}; freeing its lock in {wait:.1f}s")
        sleep(wait)
    with get_client(sync_client=True) as client, contextlib.suppress(Exception):
        client.release_concurrency_slots_with_lease(UUID(record.lock_lease))  # gone already: fine
    done = (
        f"release run {name} ended {state} {ago + wait:.0f}s ago; freed the environment lock "
        f"its process held (lease {record.lock_lease}) instead of waiting for the lease to expire"
    )
    get_run_logger().info(done)
    return done


@dataclass(frozen=True)
class RunSpan:
    """A release run as the overlap rule sees it."""

    id: str
    name: str
    state: str  # a StateType's value: RUNNING, COMPLETED, ...
    started: datetime
    ended: datetime | None = None


def earlier_release(me: RunSpan, others: Sequence[RunSpan]) -> RunSpan | None:
    """Another release of the environment that started before this one (ties: the smaller id)
    and is still running, or completed after this one started. Releases started together
    change the environment once: the first to start goes on, the others stop before changing
    anything, even one that gets the lock after the first let it go (its plan was made against
    what the first replaced)."""
    for other in sorted(others, key=lambda r: (r.started, r.id)):
        if other.id == me.id or (other.started, other.id) >= (me.started, me.id):
            continue
        completed_since = other.state == "COMPLETED" and (other.ended or me.started) > me.started
        if other.state == "RUNNING" or completed_since:
            return other
    return None


def release_runs_overlapping(environment: str) -> tuple[RunSpan, list[RunSpan]] | None:
    """This run and the release runs that may overlap it (running now, or completed since it
    started: two small queries, whatever the server's history holds), of `environment`; None
    outside a flow run."""
    if not flow_run.id:
        return None
    with get_client(sync_client=True) as client:
        mine = client.read_flow_run(UUID(flow_run.id))
        started = mine.start_time or datetime.now(UTC)
        flows = FlowFilter(id=FlowFilterId(any_=[mine.flow_id]))
        running = client.read_flow_runs(
            flow_filter=flows,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        completed = client.read_flow_runs(
            flow_filter=flows,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
                end_time=FlowRunFilterEndTime(after_=started),
            ),
        )
    spans = [
        RunSpan(
            str(r.id), r.name, r.state_type.value if r.state_type else "", r.start_time, r.end_time
        )
        for r in [*running, *completed]
        if r.start_time is not None
        and (r.parameters or {}).get("environment") == environment
        and not (r.parameters or {}).get("dry_run")  # changes nothing, takes no lock
    ]
    return RunSpan(str(mine.id), mine.name, "RUNNING", started), spans


def refuse_if_overlapping(environment: str) -> None:
    """Under the lock, before the first change: stop when another release started first."""
    found = release_runs_overlapping(environment)
    other = earlier_release(*found) if found else None
    if other is not None:
        raise ReleaseError(
            f"release run {other.name} of '{environment}' started before this one "
            f"({other.started:%H:%M:%S} UTC) and is {other.state.lower()}: releases started "
            "together change the environment once, so this one stopped before changing "
            "anything. Check what it released, then run this one again if still wanted"
        )
