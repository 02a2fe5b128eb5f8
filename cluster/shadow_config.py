"""The router's learning loop in the cluster config: shadow answers, label files, calibration reload.

`router.shadow` re-answers a sampled share of `auto` requests on larger sizes after the user's answer
went out, and writes one label record per sampled request (deployments/shadow/); its `RUNTIME_FIELDS`
also travel as the ingress's Serve `user_config`, so they change without a restart. `router.reload`
points the ingress at the calibration artifact that `qwen-cluster router retrain` writes, which it
checks every few minutes and applies without a restart (deployments/router/reload.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cluster.base_config import StrictModel
from cluster.catalog import ModelSize

ShadowSizes = Literal["up_and_largest", "largest", "all_larger"]


class ShadowConfig(StrictModel):
    """Shadow answers for a sampled share of `model: auto` requests, and their label records."""

    enabled: bool = Field(False, description="Answer sampled `auto` requests again on larger sizes.")
    sample_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="Share of completed `auto` requests sampled, streamed or not."
    )
    sizes: ShadowSizes = Field(
        "up_and_largest",
        description=(
            "Which larger served sizes answer again: `up_and_largest` (one size up and the largest "
            "served), `largest`, or `all_larger`. A request routed to the largest size is not sampled."
        ),
    )
    store_text: bool = Field(
        False,
        description=(
            "Privacy decision: store the prompt and the answers' text in label records. Off, a record "
            "holds only hashes, digests, router features and statistics, never user text."
        ),
    )
    output: str | None = Field(
        None,
        description="Where label files go: an `s3://bucket/prefix` or a local folder. Required when enabled.",
    )
    seed: int = Field(
        1234, description="Fixed sampling seed of every shadow answer (so they can be replayed)."
    )
    max_busy_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "A shadow size counts as idle while its user requests in flight here are at most this "
            "share of its admission limit and none wait; otherwise the shadow answer is dropped."
        ),
    )
    max_host_cpu: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "Sample only while this host's CPUs were busy less than this share (all cores) in each "
            "of the last five seconds. For deployments whose sizes share the ingress host's CPUs (the cpu and "
            "demo profiles), where an idle size is not an idle core. None: not checked, as on GPU "
            "workers, where each size has its own accelerator."
        ),
    )
    max_in_flight_per_size: int = Field(
        1, ge=1, le=64, description="Shadow answers running at once per size on this ingress replica."
    )
    pause_after_refusal_s: float = Field(
        30.0,
        ge=0.0,
        description=(
            "After any user request is refused (429) on this ingress replica, running shadow answers "
            "are cancelled and none starts for this long."
        ),
    )
    timeout_s: float = Field(
        60.0, gt=0.0, description="A shadow answer not done within this is cancelled and recorded as such."
    )
    judge_size: ModelSize | None = Field(
        None,
        description=(
            "Size asked whether two answers agree when they are not verifiable (exact, numeric, "
            "JSON, choice); None leaves such pairs unjudged. Runs only when that size is idle too."
        ),
    )
    flush_rows: int = Field(
        5000,
        ge=1,
        description="A label file is written early once its hour's buffer holds this many records.",
    )
    max_buffer_s: float = Field(
        3600.0,
        gt=0.0,
        description=(
            "A buffer is written when its hour ends or when it is this old, whichever comes first "
            "(3600: one file per ingress replica per hour). What a killed writer loses is at most this."
        ),
    )
    check_interval_s: float = Field(
        30.0, gt=0.0, description="How often the writer looks for a buffer that is due."
    )

    @field_validator("output")
    @classmethod
    def _output_scheme(cls, output: str | None) -> str | None:
        if output is not None and "://" in output and not output.startswith(("s3://", "file://")):
            raise ValueError(f"output must be an s3:// URI or a local folder; got {output!r}")
        return output

    @model_validator(mode="after")
    def _output_when_enabled(self) -> ShadowConfig:
        if self.enabled and not self.output:
            raise ValueError("output is required when shadow answers are enabled")
        return self


class ReloadConfig(StrictModel):
    """Where the ingress finds a newer calibration artifact, and how often it looks."""

    calibration_uri: str | None = Field(
        None,
        description=(
            "The calibration artifact (JSON) `qwen-cluster router retrain` writes: an s3:// URI or a "
            "local path. None: no calibration, the scorer's estimates are used as they are."
        ),
    )
    interval_s: float = Field(300.0, ge=1.0, description="Seconds between checks for a changed artifact.")


# The `router.shadow` fields an ingress replica applies at run time from its Serve `user_config`.
# The others are read once, when the replica builds its label writer (`output`, `flush_rows`,
# `max_buffer_s`, `check_interval_s`): offering them there would accept a change that does nothing.
RUNTIME_FIELDS = (
    "enabled",
    "sample_rate",
    "sizes",
    "store_text",
    "seed",
    "max_busy_fraction",
    "max_host_cpu",
    "max_in_flight_per_size",
    "pause_after_refusal_s",
    "timeout_s",
    "judge_size",
)
USER_CONFIG_KEY = "shadow"


def ingress_user_config(shadow: ShadowConfig) -> dict[str, Any]:
    """The ingress deployment's Serve `user_config` for these settings: `{"shadow": {...}}` with
    every field of `RUNTIME_FIELDS`, which is exactly what `apply_user_config` accepts. Both the
    local app builder and the RayService renderer use it, so the two deploy the same thing."""
    return {USER_CONFIG_KEY: shadow.model_dump(mode="json", include=set(RUNTIME_FIELDS))}


def apply_user_config(current: ShadowConfig, user_config: Mapping[str, Any] | None) -> ShadowConfig:
    """The shadow settings after applying an ingress `user_config` on top of `current`.

    A field the user_config leaves out keeps its current value; `None` or `{}` changes nothing.

    Raises:
        ValueError: for a key other than `shadow`, a field outside `RUNTIME_FIELDS` (it cannot
            change without a redeploy), or an invalid value (pydantic's ValidationError is one).
    """
    if not user_config:
        return current
    if not isinstance(user_config, Mapping) or set(user_config) - {USER_CONFIG_KEY}:
        raise ValueError(f"the ingress user_config holds only {USER_CONFIG_KEY!r}; got {user_config!r}")
    changes = user_config.get(USER_CONFIG_KEY) or {}
    if not isinstance(changes, Mapping):
        raise ValueError(f"user_config.{USER_CONFIG_KEY} must be a mapping; got {changes!r}")
    fixed = sorted(set(changes) - set(RUNTIME_FIELDS))
    if fixed:
        raise ValueError(
            f"user_config.{USER_CONFIG_KEY} cannot change {fixed} at run time (redeploy the config "
            f"instead); it takes {list(RUNTIME_FIELDS)}"
        )
    return ShadowConfig.model_validate({**current.model_dump(), **changes})
