"""Thresholds from target traffic shares: `qwen-cluster router calibrate --shares 0.4,0.3,0.2,0.1 PROMPTS.jsonl`.

Scores a sample of prompts and places the three thresholds at the quantiles the cumulative shares
ask for (RouteLLM's calibrate_threshold, generalised to four sizes). Scores tie (the feature scorer
gives many equal values), so each threshold sits between two distinct scores, at the cut whose
share is closest to the target; the achieved shares are reported next to the targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cluster.catalog import SIZES

SHARE_TOLERANCE = 0.01
THRESHOLD_DECIMALS = 6


def parse_shares(text: str) -> tuple[float, float, float, float]:
    """Parse `0.4,0.3,0.2,0.1` into four shares (0.8b, 2b, 4b, 9b) summing to 1.

    Raises:
        ValueError: unless there are four non-negative numbers summing to 1 (within 0.01).
    """
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"shares must be four comma-separated numbers; got {text!r}") from None
    if len(shares) != len(SIZES):
        raise ValueError(f"give one share per size ({', '.join(SIZES)}); got {len(shares)}")
    if any(share < 0 for share in shares):
        raise ValueError(f"shares must not be negative; got {text!r}")
    total = sum(shares)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"shares must sum to 1; they sum to {total:g}")
    return tuple(share / total for share in shares)  # type: ignore[return-value]


def thresholds_for_shares(scores: Sequence[float], shares: Sequence[float]) -> tuple[float, float, float]:
    """Three non-decreasing thresholds that split `scores` as close to `shares` as ties allow.

    A score at or below t1 goes to the first size, up to t2 to the second, and so on (the policy's
    rule). Candidate thresholds are 0, 1 and the midpoints between consecutive distinct scores.

    Raises:
        ValueError: for an empty sample or shares that are not four.
    """
    values = np.sort(np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0))
    if values.size == 0:
        raise ValueError("calibration needs at least one scored prompt")
    if len(shares) != len(SIZES):
        raise ValueError(f"give one share per size ({', '.join(SIZES)})")
    distinct = np.unique(values)
    candidates = np.unique(
        np.round(np.concatenate(([0.0, 1.0], (distinct[:-1] + distinct[1:]) / 2)), THRESHOLD_DECIMALS)
    )
    # Share of scores at or below each candidate.
    below = np.searchsorted(values, candidates, side="right") / values.size
    targets = np.cumsum(shares)[:-1]
    thresholds: list[float] = []
    for target in targets:
        index = int(np.argmin(np.abs(below - target)))  # first of equally close candidates
        if thresholds and candidates[index] < thresholds[-1]:
            index = int(np.searchsorted(candidates, thresholds[-1]))
        thresholds.append(float(candidates[index]))
    return tuple(thresholds)  # type: ignore[return-value]


def achieved_shares(
    scores: Sequence[float], thresholds: Sequence[float]
) -> tuple[float, float, float, float]:
    """The share of `scores` each size gets under `thresholds` (score <= t1 -> first size, ...)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return (0.0,) * len(SIZES)  # type: ignore[return-value]
    bands = np.searchsorted(np.asarray(thresholds), values, side="left")
    counts = np.bincount(bands, minlength=len(SIZES))
    return tuple(float(c) / values.size for c in counts)  # type: ignore[return-value]


def yaml_snippet(thresholds: Sequence[float], scorer: str) -> str:
    """The `router:` block to paste into a cluster config."""
    values = ", ".join(str(round(float(t), THRESHOLD_DECIMALS)) for t in thresholds)
    return f"router:\n  scorer: {scorer}\n  thresholds: [{values}]\n"
