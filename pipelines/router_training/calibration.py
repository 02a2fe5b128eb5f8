"""Traffic-share calibration: `qwen-cluster router calibrate --shares 0.4,0.3,0.2,0.1 PROMPTS.jsonl`.

Policy `quality` (default): per-size offsets on the estimated P(correct) (`router.size_bias`) are
searched so that the tolerance rule sends each size its share of a sample of prompts: calibration
sits on top of the quality estimates instead of replacing them.
Policy `thresholds`: scores a sample and places the three thresholds at the quantiles the cumulative
shares ask for (RouteLLM's calibrate_threshold, generalised to four sizes). Scores tie (the feature
scorer gives many equal values), so each threshold sits between two distinct scores, at the cut whose
share is closest to the target. Either way the achieved shares are reported next to the targets.
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


def _quality_shares(matrix: np.ndarray, bias: np.ndarray, tolerance: float) -> np.ndarray:
    adjusted = matrix + bias
    best = adjusted.max(axis=1, keepdims=True)
    chosen = (adjusted >= best - tolerance).argmax(axis=1)  # first (smallest) size within tolerance
    return np.bincount(chosen, minlength=matrix.shape[1]) / matrix.shape[0]


def bias_for_shares(
    estimates: Sequence[dict[str, float]],
    served: Sequence[str],
    tolerance: float,
    shares: Sequence[float],
    rounds: int = 4,
) -> tuple[dict[str, float], tuple[float, ...]]:
    """Per-size offsets on the estimated P(correct) that bring the quality policy's traffic shares
    closest to `shares` (one per served size, smallest first).

    Coordinate search: each size but the largest gets the offset in [-0.5, 0.5] (steps of 0.01) that
    minimises the total share error, a few rounds over the sizes.

    Returns:
        (offsets by size, achieved shares per served size).

    Raises:
        ValueError: for no estimates or shares that do not match the served sizes.
    """
    if not estimates:
        raise ValueError("calibration needs at least one scored prompt")
    if len(shares) != len(served):
        raise ValueError(f"give one share per served size ({', '.join(served)})")
    matrix = np.asarray([[row[s] for s in served] for row in estimates], dtype=np.float64)
    target = np.asarray(shares, dtype=np.float64)
    bias = np.zeros(len(served))
    grid = np.round(np.arange(-0.5, 0.5001, 0.01), 2)
    for _ in range(rounds):
        for index in range(len(served) - 1):
            errors = []
            for value in grid:
                trial = bias.copy()
                trial[index] = value
                errors.append(np.abs(_quality_shares(matrix, trial, tolerance) - target).sum())
            # Ties go to the offset nearest zero: the smallest change that reaches the shares.
            best = min(range(len(grid)), key=lambda i: (round(errors[i], 9), abs(grid[i])))
            bias[index] = grid[best]
    achieved = _quality_shares(matrix, bias, tolerance)
    return {s: float(b) for s, b in zip(served, bias, strict=True) if b != 0.0}, tuple(float(a) for a in achieved)


def bias_snippet(bias: dict[str, float], tolerance: float) -> str:
    """The `router:` block to paste into a cluster config for policy `quality`."""
    pairs = ", ".join(f'"{s}": {round(b, 2)}' for s, b in bias.items())
    return f"router:\n  policy: quality\n  quality_tolerance: {tolerance}\n  size_bias: {{{pairs}}}\n"
