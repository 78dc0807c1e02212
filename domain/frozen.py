"""The base of every value that crosses a layer: immutable, and strict about its fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """A frozen pydantic model: the same value is a task result, a cache input, a line of the
    release report and a field of the release record."""

    model_config = ConfigDict(frozen=True, extra="forbid")
