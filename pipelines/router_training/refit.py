"""Refitting the router's per-size calibration from label rows, and the gate a new one must pass.

The fit is a per-size logistic regression of observed correctness on (logit of the scorer's
estimate, difficulty), penalised toward the curve in use (identity when none): with few labels it
stays near what ships, with many the labels decide. The gate compares the candidate with the curve
in use on a held-out slice of the same labels (whole requests, chosen by hash, so one request never
sits on both sides) and accepts it only when its log loss is lower by at least `min_gain`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deployments.router.calibration import Calibration, SizeCurve

EPSILON = 1e-4


def held_out_requests(request_hashes: Iterable[str], share: float) -> set[str]:
    """The requests of the held-out slice: `share` of the distinct requests, rounded, and at least
    one on each side when there are two or more.

    Requests are ordered by a hash of their hash, so the slice is the same for the same labels on
    every run. An exact count rather than a per-request coin flip: with the few dozen labels a
    new cluster has, a coin flip at share 0.5 leaves one side nearly empty a few times in a hundred
    and the gate then judges nothing.
    """
    distinct = sorted(set(request_hashes), key=lambda h: hashlib.sha256(h.encode()).hexdigest())
    if len(distinct) < 2:
        return set(distinct)
    count = min(max(round(share * len(distinct)), 1), len(distinct) - 1)
    return set(distinct[:count])


def design(estimates: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """Columns [1, logit(estimate), difficulty]."""
    p = np.clip(estimates, EPSILON, 1 - EPSILON)
    return np.column_stack([np.ones_like(p), np.log(p / (1 - p)), difficulty])


def fit_curve(
    estimates: np.ndarray, difficulty: np.ndarray, correct: np.ndarray, start: SizeCurve, l2: float = 1.0
) -> SizeCurve:
    """Newton's method on the penalised log likelihood (penalty l2 * |w - start|^2), with step
    halving: plain Newton oscillates when every label is on one side and the estimates are
    saturated (the demo's random-weight labels are all "wrong")."""
    x = design(estimates, difficulty)
    y = correct.astype(float)
    prior = np.array([start.intercept, start.slope, start.difficulty_weight])

    def objective(w: np.ndarray) -> float:
        z = x @ w
        # log(1 + exp(z)) - y z, summed, written to stay finite for large |z|.
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + l2 * np.sum((w - prior) ** 2))

    w = prior.copy()
    current = objective(w)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + 2 * l2 * (w - prior)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 2 * l2 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and objective(w - scale * step) > current:
            scale /= 2
        w = w - scale * step
        improved = objective(w)
        if current - improved < 1e-10 or np.max(np.abs(scale * step)) < 1e-8:
            break
        current = improved
    return SizeCurve(float(w[0]), float(w[1]), float(w[2]))


def predict(curve: SizeCurve, estimates: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """The curve's P(correct) for many rows."""
    w = np.array([curve.intercept, curve.slope, curve.difficulty_weight])
    return 1 / (1 + np.exp(-(design(estimates, difficulty) @ w)))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary log loss."""
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass
class GateResult:
    """The refit and the gate's figures."""

    candidate: Calibration
    accepted: bool
    figures: dict[str, Any]


def _columns(rows: Sequence[Mapping[str, Any]], size: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chosen = [r for r in rows if r["size"] == size]
    return (
        np.array([r["estimate"] for r in chosen], dtype=float),
        np.array([r["difficulty"] for r in chosen], dtype=float),
        np.array([r["correct"] for r in chosen], dtype=float),
    )


def refit_and_gate(
    rows: Sequence[Mapping[str, Any]],
    current: Calibration | None,
    scorer: str,
    *,
    holdout_share: float = 0.2,
    min_gain: float = 0.0,
    min_rows_per_size: int = 30,
    l2: float = 1.0,
    version: str = "",
) -> GateResult:
    """Fit a candidate on the training slice and judge it on the held-out slice.

    Sizes with fewer than `min_rows_per_size` training rows keep the curve in use. The candidate is
    accepted when the held-out log loss over all rows drops by more than `min_gain` and the
    held-out slice has rows at all.
    """
    held = held_out_requests((r["request_hash"] for r in rows), holdout_share)
    train = [r for r in rows if r["request_hash"] not in held]
    test = [r for r in rows if r["request_hash"] in held]
    sizes = sorted({r["size"] for r in rows}, key=lambda s: float(s.rstrip("b")))
    curves: dict[str, SizeCurve] = dict(current.curves) if current else {}
    per_size: dict[str, Any] = {}
    for size in sizes:
        start = curves.get(size, SizeCurve())
        est, diff, y = _columns(train, size)
        # One-sided labels (every answer wrong) still fit: the penalty keeps the weights finite.
        if len(y) >= min_rows_per_size:
            curves[size] = fit_curve(est, diff, y, start, l2)
        per_size[size] = {
            "train_rows": len(y),
            "train_accuracy": round(float(y.mean()), 4) if len(y) else None,
        }
    candidate = Calibration(curves, scorer, version)
    ys, old, new = [], [], []
    for size in sizes:
        est, diff, y = _columns(test, size)
        if not len(y):
            continue
        in_use = current.curves.get(size, SizeCurve()) if current else SizeCurve()
        p_old, p_new = predict(in_use, est, diff), predict(curves.get(size, SizeCurve()), est, diff)
        ys.append(y), old.append(p_old), new.append(p_new)
        per_size[size] |= {
            "heldout_rows": len(y),
            "heldout_log_loss_current": round(log_loss(p_old, y), 4),
            "heldout_log_loss_candidate": round(log_loss(p_new, y), 4),
        }
    figures: dict[str, Any] = {"train_rows": len(train), "heldout_rows": len(test), "sizes": per_size}
    if not ys:
        figures["reason"] = "no held-out rows"
        return GateResult(candidate, False, figures)
    y, p_old, p_new = np.concatenate(ys), np.concatenate(old), np.concatenate(new)
    figures |= {
        "heldout_log_loss_current": round(log_loss(p_old, y), 4),
        "heldout_log_loss_candidate": round(log_loss(p_new, y), 4),
        "heldout_brier_current": round(float(np.mean((p_old - y) ** 2)), 4),
        "heldout_brier_candidate": round(float(np.mean((p_new - y) ** 2)), 4),
        "min_gain": min_gain,
    }
    gain = log_loss(p_old, y) - log_loss(p_new, y)
    accepted = gain > min_gain
    figures["reason"] = (
        "candidate beats the curve in use" if accepted else "candidate does not beat the curve in use"
    )
    return GateResult(Calibration(curves, scorer, version, {"gate": figures}), accepted, figures)
