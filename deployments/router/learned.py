"""The learned scorer: a sentence embedding of the query plus the transparent features, read by the
artifact's two linear heads (difficulty level, task family); difficulty is the expected level."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from deployments.router.artifact import LearnedArtifact, difficulty_from_levels
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.routing_input import RoutingInput
from deployments.router.score_result import ScoreResult


class Embedder(Protocol):
    """What the learned scorer needs from an embedding model."""

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


def feature_matrix(
    features: Sequence[dict[str, float]], names: Sequence[str] = FEATURE_NAMES
) -> np.ndarray:
    """Feature dicts as a matrix, columns in `names` order."""
    return np.asarray([[row[name] for name in names] for row in features], dtype=np.float32).reshape(
        len(features), len(names)
    )


def embedding_text(request: RoutingInput) -> str:
    """The text the embedding model reads: the query's instruction (not material pasted for it), or
    the context when the query has no text."""
    instruction = request.split.instruction
    return instruction if instruction.strip() else request.context


class LearnedScorer:
    """Scores with a trained artifact and the offline MiniLM embedder.

    Args:
        artifact: the trained heads.
        embedder: the embedding model; None builds the one the artifact was trained with.
    """

    name = "learned"

    def __init__(self, artifact: LearnedArtifact, embedder: Embedder | None = None):
        if not set(artifact.feature_names) <= set(FEATURE_NAMES):
            raise ValueError(
                f"artifact features {list(artifact.feature_names)} do not match this code's features"
            )
        self.artifact = artifact
        if embedder is None:
            from deployments.router.embeddings import SentenceEmbedder

            embedder = SentenceEmbedder.for_settings(artifact.embedding)
        self.embedder = embedder
        groups = sorted(set(artifact.family_groups.values()))
        # Family probabilities summed into group probabilities with one matrix product.
        self._groups = groups
        self._family_to_group = np.zeros((len(artifact.family.classes), len(groups)), dtype=np.float32)
        for row, family in enumerate(artifact.family.classes):
            self._family_to_group[row, groups.index(artifact.family_groups[family])] = 1.0

    @classmethod
    def from_artifact(cls, path: str | Path | None = None) -> LearnedScorer:
        """Load the artifact at `path` (None: the packaged one) and its embedding model."""
        return cls(LearnedArtifact.load(path))

    def score(self, request: RoutingInput) -> ScoreResult:
        """Score one request (see `Scorer.score`)."""
        return self.score_many([request])[0]

    def score_many(
        self, requests: Sequence[RoutingInput], features: Sequence[dict[str, float]] | None = None
    ) -> list[ScoreResult]:
        """Score many requests with batched embedding (for calibration, evaluation and batch jobs).

        Args:
            requests: the requests.
            features: their transparent features when the caller already has them (the blend).
        """
        if not requests:
            return []
        embeddings = self.embedder.encode([embedding_text(request) for request in requests])
        if features is None:
            features = [extract_features(request) for request in requests]
        inputs = self.artifact.inputs(embeddings, feature_matrix(features, self.artifact.feature_names))
        levels = self.artifact.level.probabilities(inputs)
        families = self.artifact.family.probabilities(inputs)
        groups = families @ self._family_to_group
        difficulties = difficulty_from_levels(levels)
        classes = self.artifact.family.classes
        results = []
        for index, row in enumerate(features):
            detail = dict(row)
            detail.update({f"p_level{k}": float(p) for k, p in enumerate(levels[index])})
            results.append(
                ScoreResult(
                    difficulty=float(difficulties[index]),
                    features=detail,
                    levels=tuple(float(p) for p in levels[index]),
                    groups={g: float(p) for g, p in zip(self._groups, groups[index], strict=True)},
                    family=classes[int(families[index].argmax())],
                )
            )
        return results
