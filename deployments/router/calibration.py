"""A per-size calibration the router applies on top of whatever scorer it has.

`qwen-cluster router retrain` fits it from the cluster's own label records: for each size, a
logistic (Platt) map from the scorer's estimate of P(correct) and the request's difficulty score to
the correctness the labels observed:

    P(correct | request, size) = sigmoid(a_s + b_s * logit(estimate_s) + c_s * difficulty)

Identity is a = c = 0, b = 1. It is deliberately scorer-agnostic: it reads only the two numbers
every scorer produces (per-size estimates and a difficulty), so the scorer behind it can be replaced
(the item-response scorer of issue 28) and the artifact refitted from the same labels. It is small
JSON, so the ingress can load it from object storage and swap it in without a restart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.catalog import SIZES

KIND = "qwen-router-calibration"
SCHEMA_VERSION = 1
EPSILON = 1e-4


def logit(p: float) -> float:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = min(1.0 - EPSILON, max(EPSILON, p))
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), without overflow."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True)
class SizeCurve:
    """One size's map: sigmoid(intercept + slope * logit(estimate) + difficulty_weight * difficulty)."""

    intercept: float = 0.0
    slope: float = 1.0
    difficulty_weight: float = 0.0

    def apply(self, estimate: float, difficulty: float) -> float:
        """The calibrated P(correct)."""
        return sigmoid(self.intercept + self.slope * logit(estimate) + self.difficulty_weight * difficulty)


@dataclass(frozen=True)
class Calibration:
    """Per-size curves plus what they were fitted for.

    Attributes:
        curves: size -> curve; a size left out keeps the scorer's estimate.
        scorer: the scorer name whose estimates it was fitted on (a different scorer refuses it).
        version: an opaque label of this fit (the retrain's time stamp), for logs and headers.
        report: the fit's and the gate's figures, kept for people.
    """

    curves: Mapping[str, SizeCurve]
    scorer: str
    version: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, estimates: Mapping[str, float], difficulty: float) -> dict[str, float]:
        """Calibrated per-size estimates (rounded as the policy rounds them)."""
        return {
            size: round(self.curves[size].apply(p, difficulty), 4) if size in self.curves else p
            for size, p in estimates.items()
        }

    def to_json(self) -> str:
        """The artifact file's text."""
        body = {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "scorer": self.scorer,
            "version": self.version,
            "curves": {
                size: {"intercept": c.intercept, "slope": c.slope, "difficulty_weight": c.difficulty_weight}
                for size, c in self.curves.items()
            },
            "report": dict(self.report),
        }
        return json.dumps(body, indent=2, sort_keys=True) + "\n"


def parse_calibration(
    text: str | bytes, served_sizes: Iterable[str] | None = None, scorer: str | None = None
) -> Calibration:
    """Read and check an artifact.

    Args:
        text: the file's content.
        served_sizes: when given, every curve must name one of these sizes.
        scorer: when given, the artifact must have been fitted on this scorer's estimates.

    Raises:
        ValueError: naming what is wrong (not JSON, another kind or schema version, an unknown or
            unserved size, a curve that is not finite numbers, another scorer).
    """
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise ValueError(f"not a router calibration (kind must be {KIND!r})")
    if body.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version {body.get('schema_version')!r}; this router reads {SCHEMA_VERSION}")
    if scorer is not None and body.get("scorer") != scorer:
        raise ValueError(f"fitted on scorer {body.get('scorer')!r}; this router runs {scorer!r}")
    raw = body.get("curves")
    if not isinstance(raw, dict) or not raw:
        raise ValueError("curves must be a non-empty mapping of size to curve")
    served = set(served_sizes) if served_sizes is not None else set(SIZES)
    curves = {}
    for size, values in raw.items():
        if size not in served:
            raise ValueError(f"curve for size {size!r}, which is not served (served: {sorted(served)})")
        try:
            curve = SizeCurve(
                float(values["intercept"]), float(values["slope"]), float(values["difficulty_weight"])
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"curve for {size} needs numbers intercept, slope, difficulty_weight") from None
        if not all(math.isfinite(v) for v in (curve.intercept, curve.slope, curve.difficulty_weight)):
            raise ValueError(f"curve for {size} is not finite")
        curves[size] = curve
    return Calibration(
        curves, str(body.get("scorer")), str(body.get("version", "")), body.get("report") or {}
    )
