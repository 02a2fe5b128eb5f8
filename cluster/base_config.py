"""Shared base for every typed config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo is an error naming the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
