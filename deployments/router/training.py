"""Training the learned scorer: `qwen-cluster router train LABELED.jsonl [--out PATH]`.

Embeds each row's query with the offline MiniLM model, appends the transparent features, fits a
multinomial logistic regression (scikit-learn) and writes the JSON artifact. Part of the file is held
out and never trained on: the rows marked `"split": "heldout"` when the file has that field (the seed
set holds out whole templates, so the figure is for phrasings the model never saw), otherwise a
stratified random fraction. The held-out accuracy of both scorers goes into the artifact and the report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

import numpy as np

from cluster.catalog import SIZES
from cluster.router_config import DEFAULT_THRESHOLDS
from deployments.router.artifact import (
    DEFAULT_ARTIFACT,
    EmbeddingSettings,
    LearnedArtifact,
    difficulty_from_probabilities,
)
from deployments.router.dataset import LabeledRow, load_rows
from deployments.router.features import FEATURE_NAMES
from deployments.router.learned import Embedder, embedding_text, feature_matrix
from deployments.router.scorers import FeatureScorer


@dataclass
class TrainingReport:
    """What a training run did and how well the result does on the held-out rows."""

    train_rows: int
    heldout_rows: int
    heldout_source: str
    train_accuracy: float
    heldout_accuracy: float | None
    heldout_accuracy_features: float | None
    heldout_confusion: list[list[int]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"train rows: {self.train_rows}, held-out rows: {self.heldout_rows} ({self.heldout_source})",
            "accuracies use the default thresholds " + "/".join(map(str, DEFAULT_THRESHOLDS)),
            f"learned scorer accuracy: train {self.train_accuracy:.3f}"
            + (f", held-out {self.heldout_accuracy:.3f}" if self.heldout_accuracy is not None else ""),
        ]
        if self.heldout_accuracy_features is not None:
            out.append(f"feature scorer accuracy: held-out {self.heldout_accuracy_features:.3f}")
        if self.heldout_confusion:
            out.append("held-out confusion (rows: label, columns: predicted " + " ".join(SIZES) + "):")
            out += [
                f"  {size:>5} " + " ".join(f"{n:4d}" for n in row)
                for size, row in zip(SIZES, self.heldout_confusion, strict=True)
            ]
        return out


def split_rows(
    rows: Sequence[LabeledRow], holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[list[LabeledRow], list[LabeledRow], str]:
    """Split labeled rows into train and held-out.

    Returns:
        (train, heldout, how the split was made).
    """
    labeled = [r for r in rows if r.label is not None]
    if any(r.split is not None for r in labeled):
        train = [r for r in labeled if r.split != "heldout"]
        return train, [r for r in labeled if r.split == "heldout"], "the file's `split` field"
    if holdout_fraction <= 0:
        return labeled, [], "none"
    rng = Random(seed)
    train, heldout = [], []
    for size in SIZES:
        group = [r for r in labeled if r.label == size]
        rng.shuffle(group)
        cut = round(len(group) * holdout_fraction)
        heldout += group[:cut]
        train += group[cut:]
    return train, heldout, f"stratified random {holdout_fraction:.0%}, seed {seed}"


def _bands(difficulties: np.ndarray) -> np.ndarray:
    # The size the default thresholds give each score, as the router would route it.
    return np.searchsorted(DEFAULT_THRESHOLDS, difficulties, side="left")


def _labels(rows: Sequence[LabeledRow]) -> np.ndarray:
    return np.asarray([SIZES.index(r.label) for r in rows])


def fit_artifact(
    rows: Sequence[LabeledRow], embedder: Embedder, settings: EmbeddingSettings, c: float = 1.0
) -> LearnedArtifact:
    """Fit the classifier on labeled rows.

    Raises:
        ValueError: with fewer than two distinct labels.
    """
    from sklearn.linear_model import LogisticRegression

    labels = _labels(rows)
    if len(set(labels.tolist())) < 2:
        raise ValueError("training needs rows of at least two different sizes")
    embeddings = embedder.encode([embedding_text(r.request) for r in rows])
    features = feature_matrix([r.request for r in rows])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    inputs = np.hstack([embeddings, (features - mean) / scale])
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    model.fit(inputs, labels)
    # Sizes absent from the training rows get zero weights and a very low bias: never predicted.
    coef = np.zeros((len(SIZES), inputs.shape[1]), dtype=np.float64)
    intercept = np.full(len(SIZES), -30.0)
    if len(model.classes_) == 2:
        # A binary model gives one logit (second class against the first); softmax over (0, logit) matches it.
        low, high = model.classes_
        coef[high], intercept[high], intercept[low] = model.coef_[0], model.intercept_[0], 0.0
    else:
        for row, cls in enumerate(model.classes_):
            coef[cls], intercept[cls] = model.coef_[row], model.intercept_[row]
    return LearnedArtifact(
        classes=SIZES,
        feature_names=FEATURE_NAMES,
        coef=coef,
        intercept=intercept,
        feature_mean=mean.astype(np.float64),
        feature_scale=scale.astype(np.float64),
        embedding=settings,
    )


def learned_difficulties(
    artifact: LearnedArtifact, embedder: Embedder, rows: Sequence[LabeledRow]
) -> np.ndarray:
    """The learned scorer's difficulty for each row."""
    if not rows:
        return np.zeros(0)
    embeddings = embedder.encode([embedding_text(r.request) for r in rows])
    features = feature_matrix([r.request for r in rows], artifact.feature_names)
    return difficulty_from_probabilities(artifact.probabilities(embeddings, features))


def train(
    path: str | Path,
    out: str | Path | None = None,
    *,
    embedder: Embedder | None = None,
    settings: EmbeddingSettings | None = None,
    c: float = 1.0,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[LearnedArtifact, TrainingReport, Path]:
    """Train on a labeled JSONL file, evaluate on its held-out part, and save the artifact.

    Args:
        path: labeled JSONL (see dataset.py).
        out: where to write the artifact; None overwrites the packaged default.
        embedder: the embedding model; None builds the offline MiniLM one for `settings`.
        settings: embedding settings (token budget, int8).
        c: inverse regularization strength of the logistic regression.
        holdout_fraction: used only when the file has no `split` field.
        seed: for the random hold-out.

    Returns:
        (artifact, report, path written).
    """
    settings = settings or EmbeddingSettings()
    if embedder is None:
        from deployments.router.embeddings import SentenceEmbedder

        embedder = SentenceEmbedder(max_tokens=settings.max_tokens, int8=settings.int8)
    rows = load_rows(path, require_label=True)
    train_rows, heldout_rows, source = split_rows(rows, holdout_fraction, seed)
    if not train_rows:
        raise ValueError(f"{path}: no labeled training rows")
    artifact = fit_artifact(train_rows, embedder, settings, c)
    train_accuracy = float(
        (_bands(learned_difficulties(artifact, embedder, train_rows)) == _labels(train_rows)).mean()
    )
    report = TrainingReport(len(train_rows), len(heldout_rows), source, train_accuracy, None, None)
    if heldout_rows:
        truth = _labels(heldout_rows)
        predicted = _bands(learned_difficulties(artifact, embedder, heldout_rows))
        report.heldout_accuracy = float((predicted == truth).mean())
        scorer = FeatureScorer()
        by_features = _bands(np.asarray([scorer.score(r.request).difficulty for r in heldout_rows]))
        report.heldout_accuracy_features = float((by_features == truth).mean())
        confusion = np.zeros((len(SIZES), len(SIZES)), dtype=int)
        np.add.at(confusion, (truth, predicted), 1)
        report.heldout_confusion = confusion.tolist()
    artifact.training = {
        "data": Path(path).name,
        "data_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "trained_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": "multinomial logistic regression (scikit-learn), class_weight=balanced",
        "C": c,
        "train_rows": report.train_rows,
        "heldout_rows": report.heldout_rows,
        "heldout_source": source,
        "train_accuracy": round(report.train_accuracy, 4),
        "heldout_accuracy": None if report.heldout_accuracy is None else round(report.heldout_accuracy, 4),
        "heldout_accuracy_feature_scorer": None
        if report.heldout_accuracy_features is None
        else round(report.heldout_accuracy_features, 4),
    }
    written = artifact.save(out if out is not None else DEFAULT_ARTIFACT)
    return artifact, report, written
