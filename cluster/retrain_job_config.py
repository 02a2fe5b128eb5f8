"""The nightly router retrain on Kubernetes: a RayCronJob running `qwen-cluster router retrain`.

Rendered (cluster/k8s/retrain_job.py) when the config has labels to read (`router.shadow.output`)
and a calibration to write (`router.reload.calibration_uri`); it shares the batch job's cluster
spec, config map and suspension.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from cluster.base_config import StrictModel, check_cron_schedule

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class RetrainJobConfig(StrictModel):
    """The RayCronJob that refits the router's calibration from the shadow labels every night."""

    enabled: bool = Field(
        True,
        description="Render it (only when router.shadow.output and router.reload.calibration_uri are set).",
    )
    name: str = Field("qwen-router-retrain", pattern=DNS_LABEL, description="Name of the RayCronJob.")
    schedule: str = Field(
        "30 4 * * *",
        description="Cron schedule (five fields); after the batch job's, on yesterday's labels too.",
    )
    holdout: float = Field(0.2, gt=0.0, lt=1.0, description="`--holdout` of `router retrain`.")
    min_gain: float = Field(0.0, ge=0.0, description="`--min-gain` of `router retrain` (held-out log loss).")
    target_quality: float = Field(
        0.8, gt=0.0, le=1.0, description="`--target-quality` of `router retrain` (escalation threshold)."
    )
    active_deadline_seconds: int = Field(3_600, ge=1, description="Longest a run may take, start to end.")

    @field_validator("schedule")
    @classmethod
    def _five_fields(cls, schedule: str) -> str:
        return check_cron_schedule(schedule)
