"""Counting the block documents a run reads from the Prefect server (instrumentation: the reads
are real, only counted)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient


def count_block_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, every block document read by name (`Block.load` and the product's own
    `load_environment` alike) is counted by block type slug in the returned Counter."""
    reads: Counter[str] = Counter()
    for client in (SyncPrefectClient, PrefectClient):
        monkeypatch.setattr(
            client,
            "read_block_document_by_name",
            _counted(client.read_block_document_by_name, reads),
        )
    return reads


def _counted(read: Any, reads: Counter[str]) -> Any:
    def counted(self: Any, name: str, block_type_slug: str, *args: Any, **kwargs: Any) -> Any:
        reads[block_type_slug] += 1
        return read(self, name, block_type_slug, *args, **kwargs)

    return counted
