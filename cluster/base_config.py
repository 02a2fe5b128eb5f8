"""Shared base for every typed config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config model that rejects unknown keys, so a typo is an error naming the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def check_cron_schedule(schedule: str) -> str:
    """A Kubernetes CronJob schedule: five cron fields or an @macro (`@daily`); raises ValueError."""
    if len(schedule.split()) != 5 and not schedule.startswith("@"):
        raise ValueError("schedule must have five cron fields or be a @macro")
    return schedule
