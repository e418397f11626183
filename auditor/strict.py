"""The base of every model read from a file a user writes: unknown keys are errors, not ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that refuses keys it does not define (a typo is an error with file:line)."""

    model_config = ConfigDict(extra="forbid")
