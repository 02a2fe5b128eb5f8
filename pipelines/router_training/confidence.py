"""The escalation threshold from labels: the per-token probability quantile under which an answer is
asked again one size up, chosen so that the answers kept reach a target accuracy, with its cost.

Reads the fitting rows of `shadow_labels` for the user's own answers (the size the router chose);
an answer's `correct` is its agreement with the largest size's. The cost is the share of answers
escalated and the extra completion tokens that costs (the next size up's answer, as the shadow
answers measured it where one exists, else the mean of those measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The quantile of per-token probabilities the threshold is chosen on: the label rows' `prob_q10`.
QUANTILE = 0.1


def escalation_threshold(rows: Sequence[Mapping[str, Any]], target_quality: float) -> dict[str, Any]:
    """The smallest `min_token_prob` whose kept answers reach `target_quality`, and its cost.

    Returns a report: `min_token_prob` (None when no threshold reaches the target, or no rows),
    `kept_accuracy`, `accuracy_without`, `share_escalated`, `extra_tokens_per_request`, `rows`.
    """
    usable = [r for r in rows if r.get("source") == "user" and r.get("prob_q10") is not None]
    report: dict[str, Any] = {"target_quality": target_quality, "rows": len(usable), "min_token_prob": None}
    if not usable:
        return report
    q = np.array([r["prob_q10"] for r in usable], dtype=float)
    y = np.array([r["correct"] for r in usable], dtype=float)
    measured = [r["next_size_tokens"] for r in usable if r.get("next_size_tokens") is not None]
    fallback = float(np.mean(measured)) if measured else 0.0
    extra = np.array(
        [r["next_size_tokens"] if r.get("next_size_tokens") is not None else fallback for r in usable]
    )
    report["accuracy_without"] = round(float(y.mean()), 4)
    for threshold in np.unique(np.concatenate([[0.0], q])):
        kept = q >= threshold
        if kept.sum() and y[kept].mean() >= target_quality:
            escalated = ~kept
            report |= {
                "min_token_prob": round(float(threshold), 6),
                "kept_accuracy": round(float(y[kept].mean()), 4),
                "share_escalated": round(float(escalated.mean()), 4),
                "extra_tokens_per_request": round(float(extra[escalated].sum() / len(usable)), 2),
            }
            return report
    return report
