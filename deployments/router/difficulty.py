"""The item-response difficulty scorer: P(correct | request, size) from a predicted IRT difficulty.

Offline (pipelines/router_training/irt_training.py) a two-parameter logistic item-response model is
fitted over many public models' graded answers; every question gets a difficulty b and a
discrimination a, and Qwen3.5's sizes get abilities theta on the same scale from their model cards.
Two ridge regressions learn b and log a from the request (its sentence embedding and structural
signals), a logistic head its task group. At request time:

    P(correct | request, size) = sigmoid(a * (theta_size - b) / sqrt(1 + pi * a^2 * sd^2 / 8))

where sd is the regression's residual spread (the probit approximation of averaging the curve over
the uncertainty in b, which keeps a guessed b from looking certain). The policy then picks the
cheapest size within `quality_tolerance` of the best. Levels (0..3) are the probabilities that b
falls in each size's band (the b range where that size is the policy's choice), and the difficulty
score is their expected value on [0, 1], as for every scorer.

The artifact is JSON (`DifficultyArtifact`), loads without running code and records its schema,
embedding model and training figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cluster.catalog import SIZES
from deployments.router.artifact import (
    EmbeddingSettings,
    LinearHead,
    check_compatible,
    difficulty_from_levels,
    write_atomically,
)
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.learned import Embedder, embedding_text
from deployments.router.routing_input import RoutingInput
from deployments.router.score_result import ScoreResult
from deployments.router.signals import SIGNAL_NAMES, structural_signals

DIFFICULTY_FORMAT = "qwen-cluster-router-difficulty"
DIFFICULTY_SCHEMA_VERSION = 1
DEFAULT_DIFFICULTY_ARTIFACT = Path(__file__).parent / "artifacts" / "difficulty_irt.json"
# Inputs named `cue:<feature>` are the hand-written cue features of features.py, kept only where
# the ablation in training/router/README.md showed they earn their place.
CUE_PREFIX = "cue:"
# Discrimination is kept in a sane range: a regression may extrapolate on text unlike its data.
DISCRIMINATION_RANGE = (0.3, 4.0)


@dataclass
class LinearRegression:
    """y = inputs . coef + intercept."""

    coef: np.ndarray
    intercept: float

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """One value per input row."""
        return inputs @ self.coef + self.intercept

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (5 decimals)."""
        return {"intercept": round(float(self.intercept), 5), "coef": np.round(self.coef.astype(np.float64), 5).tolist()}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> LinearRegression:
        """Read what `to_json` wrote."""
        return cls(np.asarray(document["coef"], dtype=np.float32), float(document["intercept"]))


@dataclass
class DifficultyArtifact:
    """What the difficulty scorer loads.

    Attributes:
        input_names: the signals appended after the embedding, in order (`SIGNAL_NAMES` entries and
            `cue:<feature>` entries).
        input_mean, input_scale: standardisation of those inputs.
        difficulty: regression to the IRT difficulty b.
        discrimination: regression to log a.
        residual_sd: spread of b around the regression on held-out rows (the uncertainty of b).
        groups: the task-group head.
        abilities: theta of each Qwen3.5 size on the IRT scale.
        level_cuts: the b values where the policy's choice moves up one size (3 values).
        embedding: the embedding settings the regressions were trained on.
        training: provenance and held-out figures, for people reading the file.
    """

    input_names: tuple[str, ...]
    input_mean: np.ndarray
    input_scale: np.ndarray
    difficulty: LinearRegression
    discrimination: LinearRegression
    residual_sd: float
    groups: LinearHead
    abilities: dict[str, float]
    level_cuts: tuple[float, ...]
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in self.input_names if n not in SIGNAL_NAMES and _cue(n) not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"artifact inputs {unknown} are neither structural signals nor cue features")
        width = self.difficulty.coef.shape[0]
        if self.discrimination.coef.shape[0] != width or self.groups.coef.shape[1] != width:
            raise ValueError("the difficulty, discrimination and group heads must read inputs of one width")
        if width <= len(self.input_names):
            raise ValueError("the heads read no embedding")
        if self.input_mean.shape != (len(self.input_names),) or self.input_scale.shape != self.input_mean.shape:
            raise ValueError("input_mean and input_scale must hold one value per input")
        if set(self.abilities) != set(SIZES):
            raise ValueError(f"abilities must name every size {list(SIZES)}; got {sorted(self.abilities)}")
        if len(self.level_cuts) != len(SIZES) - 1 or list(self.level_cuts) != sorted(self.level_cuts):
            raise ValueError("level_cuts must be one increasing cut between each pair of adjacent sizes")

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding part of the inputs."""
        return self.difficulty.coef.shape[0] - len(self.input_names)

    def signal_matrix(self, requests: Sequence[RoutingInput]) -> np.ndarray:
        """The appended inputs of each request, unstandardised, columns in `input_names` order."""
        cues_needed = any(name.startswith(CUE_PREFIX) for name in self.input_names)
        rows = []
        for request in requests:
            values = structural_signals(request)
            if cues_needed:
                values.update({CUE_PREFIX + k: v for k, v in extract_features(request).items()})
            rows.append([values[name] for name in self.input_names])
        return np.asarray(rows, dtype=np.float32).reshape(len(requests), len(self.input_names))

    def inputs(self, embeddings: np.ndarray, signals: np.ndarray) -> np.ndarray:
        """The heads' input rows: embeddings next to standardised signals."""
        return np.hstack([embeddings, (signals - self.input_mean) / self.input_scale])

    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, a) per input row."""
        b = self.difficulty.predict(inputs)
        a = np.clip(np.exp(self.discrimination.predict(inputs)), *DISCRIMINATION_RANGE)
        return b, a

    def estimates(self, b: np.ndarray, a: np.ndarray) -> np.ndarray:
        """P(correct) of each size (columns in `SIZES` order) for items (b, a), averaged over the
        uncertainty in b."""
        theta = np.asarray([self.abilities[s] for s in SIZES], dtype=np.float64)
        shrink = 1.0 / np.sqrt(1.0 + math.pi * (a**2) * self.residual_sd**2 / 8.0)
        z = (a * shrink)[:, None] * (theta[None, :] - b[:, None])
        return 1.0 / (1.0 + np.exp(-z))

    def levels(self, b: np.ndarray) -> np.ndarray:
        """P(b in each size's band), columns 0..3, with b ~ N(prediction, residual_sd^2)."""
        cuts = np.asarray(self.level_cuts, dtype=np.float64)
        below = _normal_cdf((cuts[None, :] - b[:, None]) / max(self.residual_sd, 1e-6))
        edges = np.hstack([np.zeros((len(b), 1)), below, np.ones((len(b), 1))])
        return np.diff(edges, axis=1)

    def to_json(self) -> dict[str, Any]:
        """The JSON document `save` writes."""
        return {
            "format": DIFFICULTY_FORMAT,
            "schema_version": DIFFICULTY_SCHEMA_VERSION,
            "embedding": self.embedding.to_json(),
            "training": self.training,
            "abilities": {s: round(float(self.abilities[s]), 4) for s in SIZES},
            "level_cuts": [round(float(c), 4) for c in self.level_cuts],
            "residual_sd": round(float(self.residual_sd), 4),
            "input_names": list(self.input_names),
            "input_mean": np.round(self.input_mean.astype(np.float64), 6).tolist(),
            "input_scale": np.round(self.input_scale.astype(np.float64), 6).tolist(),
            "difficulty": self.difficulty.to_json(),
            "discrimination": self.discrimination.to_json(),
            "groups": self.groups.to_json(),
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact through a temporary file and a rename; return its path."""
        return write_atomically(Path(path), json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def from_json(cls, document: Mapping[str, Any], path: str | Path = "<document>") -> DifficultyArtifact:
        """Build from a parsed document.

        Raises:
            ArtifactMismatchError: for another schema version or embedding model than this code's.
        """
        check_compatible(document, f"difficulty artifact {path}", DIFFICULTY_SCHEMA_VERSION)
        embedding = document["embedding"]  # present: check_compatible read its model
        return cls(
            input_names=tuple(document["input_names"]),
            input_mean=np.asarray(document["input_mean"], dtype=np.float32),
            input_scale=np.asarray(document["input_scale"], dtype=np.float32),
            difficulty=LinearRegression.from_json(document["difficulty"]),
            discrimination=LinearRegression.from_json(document["discrimination"]),
            residual_sd=float(document["residual_sd"]),
            groups=LinearHead.from_json(document["groups"]),
            abilities={str(k): float(v) for k, v in document["abilities"].items()},
            level_cuts=tuple(float(c) for c in document["level_cuts"]),
            embedding=EmbeddingSettings(
                model=embedding["model"],
                package=embedding["package"],
                max_tokens=int(embedding["max_tokens"]),
                int8=bool(embedding["int8"]),
                layers=int(embedding["layers"]),
            ),
            training=dict(document.get("training") or {}),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> DifficultyArtifact:
        """Read an artifact; None reads the packaged one.

        Raises:
            FileNotFoundError: when the file is missing.
            ArtifactMismatchError: for another schema version or embedding model.
            ValueError: when it is not a difficulty artifact.
        """
        path = Path(path) if path is not None else DEFAULT_DIFFICULTY_ARTIFACT
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"router artifact {path} is not JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != DIFFICULTY_FORMAT:
            raise ValueError(f"{path} is not a difficulty artifact (format {DIFFICULTY_FORMAT!r})")
        return cls.from_json(document, path)


def _cue(name: str) -> str:
    return name[len(CUE_PREFIX) :] if name.startswith(CUE_PREFIX) else ""


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def is_difficulty_artifact(path: str | Path) -> bool:
    """Whether the JSON file at `path` declares itself a difficulty artifact (a cheap format check)."""
    try:
        with open(path) as handle:
            head = handle.read(200)
    except OSError:
        return False
    return f'"format":"{DIFFICULTY_FORMAT}"' in head.replace(" ", "")


class DifficultyScorer:
    """Scores with a `DifficultyArtifact` and the offline MiniLM embedder.

    Args:
        artifact: the trained regressions and size abilities.
        embedder: the embedding model; None builds the one the artifact was trained with.
    """

    # The config's `learned` scorer: headers and metrics keep their name.
    name = "learned"

    def __init__(self, artifact: DifficultyArtifact, embedder: Embedder | None = None):
        self.artifact = artifact
        if embedder is None:
            from deployments.router.embeddings import SentenceEmbedder

            embedder = SentenceEmbedder.for_settings(artifact.embedding)
        self.embedder = embedder

    @classmethod
    def from_artifact(cls, path: str | Path | None = None) -> DifficultyScorer:
        """Load the artifact at `path` (None: the packaged one) and its embedding model."""
        return cls(DifficultyArtifact.load(path))

    def score(self, request: RoutingInput) -> ScoreResult:
        """Score one request (see `Scorer.score`)."""
        return self.score_many([request])[0]

    def score_many(self, requests: Sequence[RoutingInput], features: object = None) -> list[ScoreResult]:
        """Score many requests with batched embedding. `features` is accepted for the blend scorer's
        call and unused: this scorer reads its own signals."""
        if not requests:
            return []
        artifact = self.artifact
        embeddings = self.embedder.encode([embedding_text(r) for r in requests])
        signals = artifact.signal_matrix(requests)
        inputs = artifact.inputs(embeddings, signals)
        b, a = artifact.predict(inputs)
        per_size = artifact.estimates(b.astype(np.float64), a.astype(np.float64))
        levels = artifact.levels(b.astype(np.float64))
        difficulty = difficulty_from_levels(levels)
        groups = artifact.groups.probabilities(inputs)
        classes = artifact.groups.classes
        results = []
        for k in range(len(requests)):
            detail = {name: float(v) for name, v in zip(artifact.input_names, signals[k], strict=True)}
            detail.update({"irt_b": float(b[k]), "irt_a": float(a[k])})
            results.append(
                ScoreResult(
                    difficulty=float(difficulty[k]),
                    features=detail,
                    levels=tuple(float(p) for p in levels[k]),
                    groups={g: float(p) for g, p in zip(classes, groups[k], strict=True)},
                    family=classes[int(groups[k].argmax())],
                    estimates={s: float(p) for s, p in zip(SIZES, per_size[k], strict=True)},
                )
            )
        return results
