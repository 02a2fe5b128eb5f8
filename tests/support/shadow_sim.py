"""Simulated shadow label records with a known P(correct | difficulty, size).

The model (stated in docs/routing.md and docs/measurements.md):

    difficulty d ~ Uniform(0, 1)
    true   P(correct | d, s) = sigmoid(alpha_s - 4 d),  alpha = 0.8b: 1.0, 2b: 1.8, 4b: 2.6, 9b: 3.4
    scorer estimate        = sigmoid(0.6 alpha_s - 2.5 d + 2)    (too flat, too high: miscalibrated)

so the exact calibration is sigmoid(-10/3 + (5/3) logit(estimate) + d/6) for every size. Each request is
routed by the quality policy (tolerance 0.1) on the scorer's estimates, answered again one size up
and by the largest (the shadow default), and each answer's `correct` is drawn from the true model:
what agreement with a right reference and, for the largest size, a judge would give.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

SIZES = ("0.8b", "2b", "4b", "9b")
ALPHA = {"0.8b": 1.0, "2b": 1.8, "4b": 2.6, "9b": 3.4}
BETA = 4.0


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def true_p(size: str, d: float) -> float:
    """The true P(correct | d, size)."""
    return sigmoid(ALPHA[size] - BETA * d)


def scorer_estimate(size: str, d: float) -> float:
    """What the simulated scorer believes."""
    return sigmoid(0.6 * ALPHA[size] - 2.5 * d + 2.0)


def route(estimates: dict[str, float], tolerance: float = 0.1) -> str:
    best = max(estimates.values())
    return next(s for s in SIZES if estimates[s] >= best - tolerance)


def records(n: int, seed: int = 0, start: datetime | None = None) -> list[dict[str, Any]]:
    """`n` label records of schema version 1."""
    from deployments.shadow.labels import SCHEMA_VERSION, answer_entry

    rng = random.Random(seed)
    start = start or datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        d = rng.random()
        estimates = {s: round(scorer_estimate(s, d), 4) for s in SIZES}
        routed = route(estimates)
        larger = [s for s in SIZES if SIZES.index(s) > SIZES.index(routed)]
        shadow = sorted({larger[0], larger[-1]}, key=SIZES.index) if larger else []
        answers = []
        for size in [routed, *shadow]:
            entry = answer_entry(size, "user" if size == routed else "shadow", "answered")
            correct = rng.random() < true_p(size, d)
            # A confident answer is likelier right: q10 of token probability tracks correctness.
            q10 = min(1.0, max(0.0, rng.gauss(0.35 if correct else 0.15, 0.1)))
            entry |= {
                "digest": f"{i}-{size}",
                "finish_reason": "stop",
                "completion_tokens": 20 + 10 * SIZES.index(size),
                "prob_q10": q10,
                "agreement": "numeric" if size != SIZES[-1] else "judge",
                "correct": correct if shadow or size != routed else None,
            }
            answers.append(entry)
        out.append(
            {
                "schema_version": SCHEMA_VERSION,
                "record_id": f"sim-{seed}-{i}",
                "request_hash": f"{seed}-{i:08d}",
                "created_at": start + timedelta(seconds=i),
                "endpoint": "chat",
                "scorer": "features",
                "family": None,
                "difficulty": d,
                "features_json": "{}",
                "estimates_json": json.dumps(estimates),
                "raw_estimates_json": json.dumps(estimates),
                "routed_size": routed,
                "route_reason": "quality",
                "reference_size": (shadow or [routed])[-1],
                "verifiable": "numeric",
                "prompt_text": None,
                "answers": answers,
            }
        )
    return out


def curve_error(calibration, rows=None, grid: int = 101) -> dict[str, float]:
    """Max |fitted - true| P(correct) per size over d in [0, 1], or, with the fitting `rows`, over
    the difficulties where that size has labels (1st to 99th percentile): a size the router only
    sends easy requests to is never labelled on hard ones, and its curve there is extrapolation."""
    errors = {}
    for size in SIZES:
        low, high = 0.0, 1.0
        if rows is not None:
            seen = sorted(r["difficulty"] for r in rows if r["size"] == size)
            if not seen:
                continue
            low, high = seen[len(seen) // 100], seen[-1 - len(seen) // 100]
        worst = 0.0
        for k in range(grid):
            d = low + (high - low) * k / (grid - 1)
            raw = scorer_estimate(size, d)
            fitted = calibration.apply({size: raw}, d)[size] if calibration else raw
            worst = max(worst, abs(fitted - true_p(size, d)))
        errors[size] = round(worst, 4)
    return errors


def apgr(choose, n: int = 4000, seed: int = 1) -> float:
    """Average performance gap recovered (RouteLLM's APGR) of a router over a tolerance sweep.

    `choose(d)` returns the per-size estimates the quality policy routes on. Quality is the true P(correct) of the size chosen; cost is the size's
    parameters. PGR = (Q - Q_0.8b) / (Q_9b - Q_0.8b) against the cost share (cost - 0.8) / (9 - 0.8),
    integrated from (0, 0) to (1, 1) by the trapezoid rule over the sweep's points.
    """
    rng = random.Random(seed)
    ds = [rng.random() for _ in range(n)]
    params = {"0.8b": 0.8, "2b": 2.0, "4b": 4.0, "9b": 9.0}
    q_small = sum(true_p("0.8b", d) for d in ds) / n
    q_large = sum(true_p("9b", d) for d in ds) / n
    points = {(0.0, 0.0), (1.0, 1.0)}
    for k in range(41):
        tolerance = k * 0.01
        chosen = [route(choose(d), tolerance) for d in ds]
        quality = sum(true_p(s, d) for s, d in zip(chosen, ds, strict=True)) / n
        cost = sum(params[s] for s in chosen) / n
        points.add(((cost - 0.8) / (9.0 - 0.8), (quality - q_small) / (q_large - q_small)))
    ordered = sorted(points)
    # Keep the upper envelope: a router can always mix two operating points.
    hull: list[tuple[float, float]] = []
    for point in ordered:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    return round(
        sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(hull, hull[1:], strict=False)), 4
    )


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
