"""One release or rollback at a time per environment.

Deployments also carry a concurrency limit, but this lock holds for any run (UI, CLI, a direct
call) and between a release and a rollback of the same environment. It is a Prefect global
concurrency limit named `flowmasters-env-<environment>` (limit 1, created by
`deployments/register.py`), taken with a lease that Prefect renews while the run lives and lets
expire when the process dies, so a crashed run does not wedge the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency

from domain.errors import ReleaseError

# Prefect renews the lease while the run lives; after a crash the lock is free again within this.
LEASE_SECONDS = 60


def lock_name(environment: str) -> str:
    return f"flowmasters-env-{environment}"


@contextmanager
def environment_lock(environment: str, wait_seconds: float, what: str) -> Iterator[None]:
    """Hold the environment's lock; waits up to `wait_seconds`, then refuses with a message."""
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    lock_name(environment),
                    occupy=1,
                    timeout_seconds=wait_seconds,
                    lease_duration=LEASE_SECONDS,
                    strict=True,
                )
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
        yield
