"""What a release or rollback published, read back from the Prefect server: its latest artifact
of a key, and its report's step rows (flows/report.py writes them). Tests and benchmarks share
it."""

from __future__ import annotations

import json
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort


def latest_artifact(key: str) -> Any:
    """The data of the newest artifact under `key` (a table's rows come back decoded)."""
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    data = artifact.data
    return json.loads(data) if artifact.type == "table" and isinstance(data, str) else data


def step_rows(environment: str, kind: str = "release") -> list[dict[str, Any]]:
    """The rows (step, result, seconds, changed) of the environment's latest report."""
    return latest_artifact(f"{kind}-steps-{environment}")
