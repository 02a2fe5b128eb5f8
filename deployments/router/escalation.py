"""When a smaller size's answer should be asked again one size up (at most once; the caller enforces
"once" and "non-streamed"). Checks, in order: thinking cut off by `max_tokens`, a repeating loop at
the end of the answer, and low confidence: a low quantile of the answer's per-token probabilities
under a threshold (Gupta et al. 2024, "Language model cascades: token-level uncertainty and
beyond": quantiles of per-token probability defer better than the mean log-probability, which
drifts with answer length), or, where an old config still sets it, the mean log-probability. The
threshold is the configured `min_token_prob`, or the one the calibration artifact carries when
`threshold_from_artifact` is on (`applied_min_token_prob`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cluster.router_config import EscalationConfig
from deployments.router.calibration import EscalationThreshold


def token_prob_quantile(logprobs: Sequence[float], q: float) -> float | None:
    """The `q` quantile (linear interpolation) of the per-token probabilities exp(logprob); None
    for an empty answer."""
    if not logprobs:
        return None
    probs = sorted(math.exp(min(0.0, lp)) for lp in logprobs)
    position = q * (len(probs) - 1)
    low = math.floor(position)
    high = min(low + 1, len(probs) - 1)
    return probs[low] + (probs[high] - probs[low]) * (position - low)


def is_looping(text: str, window: int, min_repeats: int) -> bool:
    """Whether the last `window` characters of `text` are one unit repeated at least `min_repeats`
    times (a degenerate generation loop).

    A string of length n repeats a unit of length p exactly when it equals itself shifted by p, so
    each candidate period costs one string comparison. Trailing whitespace is ignored. Text shorter
    than the window is never called a loop: too little to tell.
    """
    tail = text.rstrip()
    if len(tail) < window:
        return False
    tail = tail[-window:]
    return any(tail[period:] == tail[:-period] for period in range(1, window // min_repeats + 1))


def artifact_threshold_problem(config: EscalationConfig, artifact: EscalationThreshold) -> str | None:
    """Why the artifact's threshold does not apply to this config (None when it does)."""
    if not config.threshold_from_artifact:
        return "router.escalation.threshold_from_artifact is off"
    if not math.isclose(artifact.token_prob_quantile, config.token_prob_quantile):
        return (
            f"it was chosen on the {artifact.token_prob_quantile} quantile of per-token probabilities; "
            f"router.escalation.token_prob_quantile is {config.token_prob_quantile}"
        )
    return None


def applied_min_token_prob(config: EscalationConfig, artifact: EscalationThreshold | None) -> float | None:
    """The low-confidence threshold in force: the artifact's when there is one that applies, else the
    configured `min_token_prob` (None: the rule is off)."""
    if artifact is None or artifact_threshold_problem(config, artifact) is not None:
        return config.min_token_prob
    return artifact.min_token_prob


def escalation_reason(
    config: EscalationConfig,
    *,
    mean_logprob: float | None,
    finish_reason: str,
    thinking_unfinished: bool,
    completion_text: str,
    token_logprobs: Sequence[float] = (),
    artifact: EscalationThreshold | None = None,
) -> str | None:
    """The reason to escalate an answer (`cut_off_thinking`, `looping`, `low_confidence`), or None.

    `artifact` is the calibration artifact's threshold, if any (`applied_min_token_prob` decides
    whether it replaces the configured one). Does not look at sizes: whether a larger size exists is
    the router's question.
    """
    if not config.enabled:
        return None
    if config.on_cut_off_thinking and finish_reason == "length" and thinking_unfinished:
        return "cut_off_thinking"
    if is_looping(completion_text, config.loop_window_chars, config.loop_min_repeats):
        return "looping"
    threshold = applied_min_token_prob(config, artifact)
    if threshold is not None:
        quantile = token_prob_quantile(token_logprobs, config.token_prob_quantile)
        if quantile is not None and quantile < threshold:
            return "low_confidence"
    if (
        config.min_mean_logprob is not None
        and mean_logprob is not None
        and mean_logprob < config.min_mean_logprob
    ):
        return "low_confidence"
    return None
