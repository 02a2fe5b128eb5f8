"""Scorers: `score(request) -> ScoreResult` with a difficulty level estimate, a task group and the cues.

Three kinds, picked by `RouterConfig.scorer`: `features` (a transparent weighted sum and keyword
groups, no model), `learned` (sentence embedding and structural signals read by regressions to an
item-response difficulty, in difficulty.py; or an older level/family-head artifact, learned.py) and
`blend` (a weighted mean of the two; it routes by levels and the quality table). Difficulty is on one scale everywhere: level k's band is
[k/4, (k+1)/4], so the thresholds policy works before calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from cluster.router_config import RouterConfig
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.quality import LEVELS
from deployments.router.routing_input import RoutingInput
from deployments.router.score_result import Scorer, ScoreResult

log = logging.getLogger(__name__)

__all__ = ["BlendScorer", "FeatureScorer", "ScoreResult", "Scorer", "build_scorer", "level_probabilities"]


def _clip(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


# Each weight says how far one fully-present cue moves a prompt up the scale (a quarter of the scale
# is one level). Set by hand from a least-squares fit on the training split of
# training/router/data/prompts.jsonl, keeping every cue's sign sensible (an unconstrained search
# overfits that set: it gave competition problems a negative weight); the later cues (demand, parts,
# material, systems, symbolic) and the weights they moved were chosen by
# leave-families-out cross-validation (training/router/cross_validate.py); see training/router/README.md.
# The bias sits below the first quarter so that a prompt with no cue at all (a greeting) lands on
# the smallest size, and the hard cues together reach the top quarter, so every size is reachable.
FEATURE_WEIGHTS: Mapping[str, float] = {
    "length": 0.45,
    "turns": 0.20,
    "images": 0.10,
    "math": 0.55,
    "code": 0.15,
    "multi_step": 0.10,
    "reasoning": 0.55,
    "competition": 0.50,
    "non_english": 0.05,
    "demand": 0.80,
    "parts": 0.25,
    "material": 0.20,
    "systems": 0.60,
    "symbolic": 0.50,
}
FEATURE_BIAS = 0.16
# Softness of the feature scorer's level estimate: the score's distance to each level's centre,
# in quarters of the scale, weighted by exp(-(distance / width)^2).
LEVEL_WIDTH = 0.6


def level_probabilities(difficulty: float) -> tuple[float, ...]:
    """Level probabilities around a difficulty score (the feature scorer has no level head)."""
    import math

    position = difficulty * LEVELS - 0.5
    weights = [math.exp(-(((k - position) / LEVEL_WIDTH) ** 2)) for k in range(LEVELS)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def feature_groups(features: Mapping[str, float]) -> dict[str, float]:
    """Task groups of the quality table guessed from cues, as weights summing to 1."""
    cues = {
        "vision": 2.0 * features["images"],
        "maths": features["math"] + features["competition"],
        "coding": 1.5 * features["code"],
        "long_context": max(0.0, max(features["length"], features["material"]) - 0.55) * 4.0,
        "multilingual": features["non_english"],
    }
    cues = {group: value for group, value in cues.items() if value > 0.15}
    if not cues:
        return {"knowledge": 1.0}
    total = sum(cues.values())
    return {group: value / total for group, value in cues.items()}


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
        difficulty = _clip(self.bias + sum(weight * features[name] for name, weight in self.weights.items()))
        groups = feature_groups(features)
        return ScoreResult(
            difficulty=difficulty,
            features=features,
            levels=level_probabilities(difficulty),
            groups=groups,
            family=max(groups, key=groups.__getitem__),
        )


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
        w = self.learned_weight
        merged = dict(by_features.features)
        merged.update(by_learned.features)
        merged["features_score"] = by_features.difficulty
        merged["learned_score"] = by_learned.difficulty
        levels = tuple(
            (1 - w) * f + w * lf for f, lf in zip(by_features.levels, by_learned.levels, strict=True)
        )
        return ScoreResult(
            difficulty=_clip((1 - w) * by_features.difficulty + w * by_learned.difficulty),
            features=merged,
            levels=levels,
            groups=by_learned.groups,
            family=by_learned.family,
        )

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

    A learned artifact made for another schema version or embedding model is refused; the router
    then scores with `features` and says so once in the log.

    Raises:
        ValueError: for an unknown kind or a file that is not a router artifact.
        FileNotFoundError: when the learned artifact is missing.
    """
    kind = kind or config.scorer
    if kind == "features":
        return FeatureScorer()
    if kind in ("learned", "blend"):
        from deployments.router.artifact import ArtifactMismatchError
        from deployments.router.difficulty import (
            DEFAULT_DIFFICULTY_ARTIFACT,
            DifficultyScorer,
            is_difficulty_artifact,
        )
        from deployments.router.learned import LearnedScorer

        path = config.artifact_path
        if path is None and DEFAULT_DIFFICULTY_ARTIFACT.is_file():
            path = DEFAULT_DIFFICULTY_ARTIFACT
        try:
            # The item-response difficulty scorer's artifact when one is shipped (training ships it
            # only when it meets its held-out goals) or named; else the level/family-head artifact.
            if path is not None and is_difficulty_artifact(path):
                learned: Scorer = DifficultyScorer.from_artifact(path)
            else:
                learned = LearnedScorer.from_artifact(path)
        except ArtifactMismatchError as error:
            log.warning("%s; routing with the features scorer instead", error)
            return FeatureScorer()
        if kind == "learned":
            return learned
        return BlendScorer(FeatureScorer(), learned, config.blend_learned_weight)
    raise ValueError(f"unknown scorer {kind!r}; valid: features, learned, blend")
