"""CloudFront: the distribution in front of the load balancer, invalidated after a release."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from domain.errors import ReleaseError, TransientError
from targets.aws.clients import poll


def describe_distribution(cloudfront: Any, dist_id: str) -> str:
    """verify's probe: the distribution exists (its status)."""
    dist = cloudfront.get_distribution(Id=dist_id)
    return f"CloudFront {dist_id} {dist['Distribution']['Status']}"


def invalidate(
    cloudfront: Any,
    dist_id: str,
    paths: list[str],
    environment: str,
    timeout: float,
    interval: float,
    log: Callable[[str], None],
) -> str:
    """Invalidate `paths` and wait until CloudFront reports it completed. Own polling of
    get_invalidation: moto's `invalidation_completed` waiter never ends."""
    created = cloudfront.create_invalidation(
        DistributionId=dist_id,
        InvalidationBatch={
            "Paths": {"Quantity": len(paths), "Items": paths},
            "CallerReference": f"flowmasters-{environment}-{uuid.uuid4().hex}",
        },
    )["Invalidation"]

    def probe() -> tuple[bool, str, str]:
        found = cloudfront.get_invalidation(DistributionId=dist_id, Id=created["Id"])
        status = found["Invalidation"]["Status"]
        return status.lower() == "completed", status, f"invalidation {created['Id']} {status}"

    started = time.monotonic()
    try:
        poll(f"CloudFront invalidation of {dist_id}", probe, timeout, interval, log)
    except ReleaseError as exc:  # still running at CloudFront: a retry may see it through
        raise TransientError(str(exc)) from exc
    return (
        f"CloudFront {dist_id}: invalidation {created['Id']} of {', '.join(paths)} completed "
        f"in {time.monotonic() - started:.1f}s"
    )
