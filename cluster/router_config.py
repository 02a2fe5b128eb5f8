"""Router section of the cluster config (the router is built in deployments/router/).

The router estimates, for each `model: auto` request, every served size's chance of answering it
well (from the request's task group and difficulty level and per-size priors from the model cards),
sends it to the smallest size within `quality_tolerance` of the best (policy `quality`), decides
thinking on or off, and optionally asks again one size up when a small size's answer looks bad.
`qwen-cluster router calibrate --shares 0.4,0.3,0.2,0.1 PROMPTS.jsonl` fits per-size offsets (or,
with policy `thresholds`, score thresholds) to target traffic shares and prints the block to paste.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cluster.base_config import StrictModel
from cluster.catalog import ModelSize
from cluster.shadow_config import ReloadConfig, ShadowConfig

ScorerKind = Literal["features", "learned", "blend"]
PolicyKind = Literal["quality", "thresholds"]
ThinkingMode = Literal["difficulty", "size_default", "always", "never"]
CapacityFallback = Literal["up", "down", "off"]

DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75)


class ThinkingRule(StrictModel):
    """When routed requests think. A request's explicit `chat_template_kwargs.enable_thinking` wins."""

    mode: ThinkingMode = Field(
        "difficulty",
        description=(
            "`difficulty`: thinking on at or above `min_difficulty`; `size_default`: the catalog's "
            "`thinking_default` of the size the request lands on; `always` / `never`."
        ),
    )
    min_difficulty: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=(
            "With mode `difficulty`: thinking on at or above this score. None derives it from the "
            "catalog: the threshold from which requests go to the smallest size whose "
            "`thinking_default` is on (4b, so thresholds[1])."
        ),
    )


class EscalationConfig(StrictModel):
    """Asking again one size up when a non-streamed answer from a smaller size looks bad (at most once)."""

    enabled: bool = Field(False, description="Escalate bad answers one size up.")
    token_prob_quantile: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description=(
            "Which quantile of the answer's per-token probabilities is its confidence (0.1: the "
            "probability that 90% of its tokens beat). Unlike the mean log-probability it does not "
            "drift with answer length."
        ),
    )
    min_token_prob: float | None = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description=(
            "An answer whose `token_prob_quantile` per-token probability is below this is "
            "low-confidence; None turns the rule off. `qwen-cluster router retrain --target-quality` "
            "prints the value its labels call for and writes it into the calibration artifact."
        ),
    )
    threshold_from_artifact: bool = Field(
        False,
        description=(
            "Use the `min_token_prob` of the calibration artifact (`router.reload`) instead of the "
            "configured one, from the moment the artifact is loaded or reloaded. The configured value "
            "stays in force while the artifact has none or was fitted for another "
            "`token_prob_quantile`. Off by default: a value set here is never overridden unasked."
        ),
    )
    min_mean_logprob: float | None = Field(
        None,
        le=0.0,
        description=(
            "Deprecated (length-biased): also call an answer low-confidence when its mean token "
            "log-probability is below this. None (the default) leaves it off; kept so old configs load."
        ),
    )
    disagreement: bool = Field(
        False,
        description=(
            "For a verifiable answer (JSON, a choice letter, a number, a short exact answer), ask the "
            "same size for a second sample (seed + 1) and escalate when the two disagree. Costs one "
            "more answer from the small size per such request (`routing.second_sample_tokens`)."
        ),
    )
    on_cut_off_thinking: bool = Field(
        True, description="Escalate an answer cut off by `max_tokens` before its thinking ended."
    )
    loop_window_chars: int = Field(
        240,
        ge=16,
        le=8192,
        description="The tail of the answer, in characters, checked for a repeating loop.",
    )
    loop_min_repeats: int = Field(
        3, ge=2, le=100, description="A loop is a unit repeated at least this many times across the window."
    )


class StructureWeights(StrictModel):
    """How much each structural signal of a request weighs (policy `quality`).

    A request's shape says something its text may not: one that offers `tools` must get its call
    right as well as its content (the `tool_use` group of the quality table), one whose answer is
    constrained to a schema must follow it (`instruction`). Each size's estimate becomes
    P(content) * P(signal's group)^weight: 0 ignores the signal, 1 counts it as a second task in full.
    """

    tools: float = Field(
        0.5, ge=0.0, le=1.0, description="Exponent of the `tool_use` factor when the request offers tools."
    )
    structured: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Exponent of the `instruction` factor when the answer is constrained (schema, json_object, grammar).",
    )


class RouterConfig(StrictModel):
    """How requests for `auto` are sent to a size."""

    enabled: bool = Field(
        False, description="Route `model: auto` by difficulty; off sends it to `fallback_size`."
    )
    fallback_size: ModelSize = Field("0.8b", description="Size used for `auto` while routing is off.")
    scorer: ScorerKind = Field(
        "learned",
        description=(
            "Scorer: `learned` (MiniLM sentence embeddings + level/family heads; best on held-out "
            "data), `features` (transparent cues, no model) or `blend` (weighted mean of both)."
        ),
    )
    blend_learned_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="With scorer `blend`: weight of the learned score (features get the rest).",
    )
    artifact_path: Path | None = Field(
        None,
        description="Learned-scorer artifact (JSON); None uses the one packaged in deployments/router/artifacts/.",
    )
    policy: PolicyKind = Field(
        "quality",
        description=(
            "`quality`: the smallest served size whose estimated P(correct) is within "
            "`quality_tolerance` of the best served size's; `thresholds`: the difficulty score cut at "
            "`thresholds`."
        ),
    )
    quality_tolerance: float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description=(
            "With policy `quality`: how much estimated P(correct) may be given up against the best "
            "served size to use a smaller one (0 always picks the best; larger is cheaper)."
        ),
    )
    size_bias: dict[ModelSize, float] = Field(
        default_factory=dict,
        description=(
            "With policy `quality`: offsets added to each size's estimated P(correct) before the "
            "tolerance rule; set by `qwen-cluster router calibrate --shares` to reach traffic shares."
        ),
    )
    priors_path: Path | None = Field(
        None,
        description=(
            "Per-size quality priors (JSON); None uses the packaged model-card priors "
            "(deployments/router/artifacts/size_priors.json). A learned artifact's label-refined table wins."
        ),
    )
    thresholds: tuple[float, float, float] = Field(
        DEFAULT_THRESHOLDS,
        description=(
            "With policy `thresholds`: scores at or below t1 go to 0.8b, up to t2 to 2b, up to t3 to "
            "4b, above t3 to 9b. "
            "Non-decreasing in [0, 1]; equal thresholds give the size between them no traffic. "
            "Calibrate them from traffic shares with `qwen-cluster router calibrate`."
        ),
    )
    structure_weights: StructureWeights = Field(
        default_factory=StructureWeights,
        description="With policy `quality`: how much offering tools and constraining the answer weigh.",
    )
    thinking: ThinkingRule = Field(
        default_factory=ThinkingRule, description="Thinking on or off per request."
    )
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, description="Re-asking one size up after a bad answer."
    )
    shadow: ShadowConfig = Field(
        default_factory=ShadowConfig,
        description="Shadow answers and label records (the router's own labels).",
    )
    reload: ReloadConfig = Field(
        default_factory=ReloadConfig, description="Hot reload of the calibration artifact from `retrain`."
    )
    capacity_fallback: CapacityFallback = Field(
        "up",
        description=(
            "When the chosen size has no ready replica or a full queue: send the request to the "
            "nearest served size `up` or `down` that has capacity, or `off` to keep the choice."
        ),
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_ordered(cls, thresholds: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must lie in [0, 1]; got {list(thresholds)}")
        if not thresholds[0] <= thresholds[1] <= thresholds[2]:
            raise ValueError(f"thresholds must be non-decreasing (t1 <= t2 <= t3); got {list(thresholds)}")
        return thresholds

    @model_validator(mode="after")
    def _artifact_exists(self) -> RouterConfig:
        # Only checked when the learned scorer will load it, so a stale path in an unused field is harmless.
        if (
            self.enabled
            and self.scorer in ("learned", "blend")
            and self.artifact_path is not None
            and not Path(self.artifact_path).is_file()
        ):
            raise ValueError(f"artifact_path {self.artifact_path} is not a file")
        return self
