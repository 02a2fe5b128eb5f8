"""A per-size calibration the router applies on top of whatever scorer it has.

`qwen-cluster router retrain` fits it from the cluster's own label records: for each size, a
logistic (Platt) map from the scorer's estimate of P(correct) and the request's difficulty score to
the correctness the labels observed:

    P(correct | request, size) = sigmoid(a_s + b_s * logit(estimate_s) + c_s * difficulty)

Identity is a = c = 0, b = 1. It is deliberately scorer-agnostic: it reads only the two numbers
every scorer produces (per-size estimates and a difficulty), so the scorer behind it can be replaced
(the item-response scorer of issue 28) and the artifact refitted from the same labels. It is small
JSON, so the ingress can load it from object storage and swap it in without a restart.

It may also carry the escalation threshold the same labels call for (`escalation`: the per-token
probability quantile under which an answer is asked again one size up), which the ingress applies
when `router.escalation.threshold_from_artifact` is on. The field is optional and additive, so the
schema version stays 1: an artifact without it loads as before, and an older ingress reading a newer
artifact ignores it and keeps its configured `min_token_prob`.
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
class EscalationThreshold:
    """The `min_token_prob` the labels call for, and what it was chosen for.

    Attributes:
        min_token_prob: escalate an answer whose `token_prob_quantile` per-token probability is
            below this (in [0, 1]).
        token_prob_quantile: the quantile it was chosen on (the labels' `prob_q10`: 0.1); a router
            configured for another quantile does not apply it.
        target_quality: the accuracy of kept answers it was chosen to reach, for people.
    """

    min_token_prob: float
    token_prob_quantile: float = 0.1
    target_quality: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The artifact's `escalation` object."""
        return {
            "min_token_prob": self.min_token_prob,
            "token_prob_quantile": self.token_prob_quantile,
            "target_quality": self.target_quality,
        }


@dataclass(frozen=True)
class Calibration:
    """Per-size curves plus what they were fitted for.

    Attributes:
        curves: size -> curve; a size left out keeps the scorer's estimate.
        scorer: the scorer name whose estimates it was fitted on (a different scorer refuses it).
        version: an opaque label of this fit (the retrain's time stamp), for logs and headers.
        report: the fit's and the gate's figures, kept for people.
        escalation: the escalation threshold fitted from the same labels, or None.
    """

    curves: Mapping[str, SizeCurve]
    scorer: str
    version: str = ""
    report: Mapping[str, Any] = field(default_factory=dict)
    escalation: EscalationThreshold | None = None

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
        # Left out rather than null when absent: such a file is byte for byte what it was before.
        if self.escalation is not None:
            body["escalation"] = self.escalation.to_dict()
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
            unserved size, a curve that is not finite numbers, another scorer, an escalation
            threshold or quantile out of range).
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
        curves,
        str(body.get("scorer")),
        str(body.get("version", "")),
        body.get("report") or {},
        parse_escalation(body.get("escalation")),
    )


def _number(value: Any, name: str, *, exclusive: bool = False) -> float:
    """A finite number in [0, 1], or in (0, 1) when `exclusive`."""
    # bool is an int to Python: `true` must not read as 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"escalation.{name} must be a finite number; got {value!r}")
    inside = 0.0 < value < 1.0 if exclusive else 0.0 <= value <= 1.0
    if not inside:
        raise ValueError(f"escalation.{name} {value!r} is outside {'(0, 1)' if exclusive else '[0, 1]'}")
    return float(value)


def parse_escalation(raw: Any) -> EscalationThreshold | None:
    """The artifact's optional `escalation` object (None when absent or null).

    Raises:
        ValueError: for a non-object, a threshold outside [0, 1], a quantile outside (0, 1), or a
            target quality outside [0, 1].
    """
    if raw is None:
        return None
    if not isinstance(raw, dict) or "min_token_prob" not in raw:
        raise ValueError("escalation must be an object with min_token_prob")
    target = raw.get("target_quality")
    return EscalationThreshold(
        _number(raw["min_token_prob"], "min_token_prob"),
        _number(raw.get("token_prob_quantile", 0.1), "token_prob_quantile", exclusive=True),
        None if target is None else _number(target, "target_quality"),
    )
