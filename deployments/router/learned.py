"""The learned scorer: a sentence embedding of the query plus the transparent features, classified
into the four sizes by the artifact's logistic regression; difficulty is the expected size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from cluster.catalog import SIZES
from deployments.router.artifact import LearnedArtifact, difficulty_from_probabilities
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.routing_input import RoutingInput
from deployments.router.scorers import ScoreResult


class Embedder(Protocol):
    """What the learned scorer needs from an embedding model."""

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...


def feature_matrix(requests: Sequence[RoutingInput], names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The transparent features of each request, columns in `names` order."""
    rows = [extract_features(request) for request in requests]
    return np.asarray([[row[name] for name in names] for row in rows], dtype=np.float32).reshape(
        len(rows), len(names)
    )


def embedding_text(request: RoutingInput) -> str:
    """The text the embedding model reads: the query, or the context when the query has no text."""
    return request.query if request.query.strip() else request.context


class LearnedScorer:
    """Scores with a trained artifact and the offline MiniLM embedder.

    Args:
        artifact: the trained classifier.
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

            embedder = SentenceEmbedder(
                max_tokens=artifact.embedding.max_tokens, int8=artifact.embedding.int8
            )
        self.embedder = embedder

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
        matrix = np.asarray(
            [[row[name] for name in self.artifact.feature_names] for row in features], dtype=np.float32
        )
        probabilities = self.artifact.probabilities(embeddings, matrix)
        difficulties = difficulty_from_probabilities(probabilities)
        results = []
        for row, probs, difficulty in zip(features, probabilities, difficulties, strict=True):
            detail = dict(row)
            detail.update({f"p_{size}": float(p) for size, p in zip(SIZES, probs, strict=True)})
            results.append(ScoreResult(difficulty=float(difficulty), features=detail))
        return results
