"""Difficulty scorers: `score(request) -> ScoreResult` with a difficulty in [0, 1] and its features.

Three kinds, picked by `RouterConfig.scorer`: `features` (a transparent weighted sum, no model),
`learned` (sentence embeddings and a small classifier, in learned.py) and `blend` (a weighted mean of
the two). Scores are on one scale: the seed labels' boundaries sit near 0.25 / 0.5 / 0.75, so the
default thresholds work before calibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cluster.router_config import RouterConfig
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.routing_input import RoutingInput


@dataclass(frozen=True)
class ScoreResult:
    """A difficulty and the features that produced it."""

    difficulty: float
    features: dict[str, float] = field(default_factory=dict)


class Scorer(Protocol):
    """Anything that scores a request's difficulty."""

    name: str

    def score(self, request: RoutingInput) -> ScoreResult:
        """The request's difficulty in [0, 1] and the features behind it."""
        ...


def _clip(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


# Each weight says how far one fully-present cue moves a prompt up the scale (a quarter of the scale
# is one size). Set offline, once: a least-squares fit on the seed set's training split gave the
# starting point, a coarse search in steps of 0.05 for training-split accuracy the final values (see
# data/README.md). They are fixed numbers here; nothing is trained at run time.
FEATURE_WEIGHTS: Mapping[str, float] = {
    "length": 0.45,
    "turns": 0.30,
    "images": 0.25,
    "math": 0.05,
    "code": 0.40,
    "multi_step": 0.15,
    "reasoning": 0.35,
    "proof": 0.95,
    "step_by_step": 0.25,
    "competition": 0.95,
    "non_english": 0.10,
    "simple": -0.25,
}
FEATURE_BIAS = 0.25


class FeatureScorer:
    """Transparent scorer: a clipped weighted sum of the features in features.py.

    Args:
        weights: feature name to weight; defaults to `FEATURE_WEIGHTS`.
        bias: the score of a prompt with no cue at all.
    """

    name = "features"

    def __init__(self, weights: Mapping[str, float] | None = None, bias: float = FEATURE_BIAS):
        self.weights = dict(FEATURE_WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"unknown feature weights: {sorted(unknown)}; valid: {', '.join(FEATURE_NAMES)}")
        self.bias = bias

    def score(self, request: RoutingInput) -> ScoreResult:
        """Score one request (see `Scorer.score`)."""
        features = extract_features(request)
        total = self.bias + sum(weight * features[name] for name, weight in self.weights.items())
        return ScoreResult(difficulty=_clip(total), features=features)


class BlendScorer:
    """Weighted mean of the feature and learned scores; reports both scores and their features.

    Args:
        features: the transparent scorer.
        learned: the embedding scorer.
        learned_weight: share of the learned score in [0, 1].
    """

    name = "blend"

    def __init__(self, features: Scorer, learned: Scorer, learned_weight: float):
        if not 0.0 <= learned_weight <= 1.0:
            raise ValueError(f"learned_weight must lie in [0, 1]; got {learned_weight}")
        self.features = features
        self.learned = learned
        self.learned_weight = learned_weight

    def score(self, request: RoutingInput) -> ScoreResult:
        """Score one request (see `Scorer.score`)."""
        return self.score_many([request])[0]

    def _combine(self, by_features: ScoreResult, by_learned: ScoreResult) -> ScoreResult:
        difficulty = (
            1 - self.learned_weight
        ) * by_features.difficulty + self.learned_weight * by_learned.difficulty
        merged = dict(by_features.features)
        merged.update(by_learned.features)
        merged["features_score"] = by_features.difficulty
        merged["learned_score"] = by_learned.difficulty
        return ScoreResult(difficulty=_clip(difficulty), features=merged)

    def score_many(self, requests: Sequence[RoutingInput]) -> list[ScoreResult]:
        """Score many requests; features are extracted once and the embedding model is batched."""
        by_features = [self.features.score(request) for request in requests]
        score_many = getattr(self.learned, "score_many", None)
        if score_many is None:
            by_learned = [self.learned.score(request) for request in requests]
        else:
            by_learned = score_many(requests, features=[result.features for result in by_features])
        return [self._combine(f, lf) for f, lf in zip(by_features, by_learned, strict=True)]


def build_scorer(config: RouterConfig, kind: str | None = None) -> Scorer:
    """The scorer `config` asks for (or `kind`, to override it), models loaded.

    Raises:
        ValueError: for an unknown kind.
        FileNotFoundError: when the learned artifact is missing.
    """
    kind = kind or config.scorer
    if kind == "features":
        return FeatureScorer()
    if kind in ("learned", "blend"):
        from deployments.router.learned import LearnedScorer

        learned = LearnedScorer.from_artifact(config.artifact_path)
        if kind == "learned":
            return learned
        return BlendScorer(FeatureScorer(), learned, config.blend_learned_weight)
    raise ValueError(f"unknown scorer {kind!r}; valid: features, learned, blend")
