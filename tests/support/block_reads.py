"""Counting the block documents a run reads from the Prefect server (instrumentation: the reads
are real, only counted)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prefect.blocks.core import Block


def count_block_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, every `Block.load` is counted by block type slug in the returned Counter."""
    reads: Counter[str] = Counter()
    read = Block._get_block_document.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Block], name: str, client: Any) -> Any:
        reads[cls.get_block_type_slug()] += 1
        return read(cls, name, client)

    monkeypatch.setattr(Block, "_get_block_document", classmethod(counted))
    return reads
