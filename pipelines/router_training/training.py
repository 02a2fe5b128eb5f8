"""Training the learned scorer: `qwen-cluster router train [LABELED.jsonl] [--correct CORRECT.jsonl]`.

Heads: each labeled row's query is embedded with the offline MiniLM model and the transparent
features are appended. The level head is a ridge regression on the level (ordinal: it generalised
to unseen task families far better than a multinomial classifier, 0.63 against 0.43 exact on the
family-held-out split), blended with the hand-set feature scorer's level (both are linear in the
inputs, so the blend is one linear estimate e), stored as the equivalent softmax over levels with
logits (2k·e − k²)/w². Ridge penalty and blend weight were chosen by 5-fold
leave-families-out cross-validation over the training families (exact size agreement under the
quality policy), never on a held-out split, and the width on the public tier sources' training
halves (see LEVEL_WIDTH); the family head is a multinomial logistic regression
(scikit-learn, the `train` extra). Each phrasing (template) weighs the same in training, so a template
with many rows does not teach its surface. Rows whose `split` starts with `heldout` are never
trained on; the held-out figures go into the artifact and the report.

Quality: rows with per-size `correct` labels (from `router label`) refine the table of
P(correct | group, level, size): each cell's model-card prior counts as `PRIOR_STRENGTH` pseudo-rows
and every labeled row adds its correctness, weighted by the scorer's group and level probabilities.

The artifact records the hash of its data, the embedding model and its schema version, and is written
through a temporary file, so a failed run leaves no partial artifact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cluster.catalog import SIZES
from deployments.router.artifact import (
    DEFAULT_ARTIFACT,
    EmbeddingSettings,
    LearnedArtifact,
    LinearHead,
)
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.learned import Embedder, LearnedScorer, embedding_text, feature_matrix
from deployments.router.quality import LEVELS, QualityTable, prior_table
from deployments.router.scorers import FEATURE_BIAS, FEATURE_WEIGHTS
from pipelines.router_training.dataset import DatasetError, LabeledRow, load_rows

# How many labeled rows one model-card prior cell is worth when labels refine it.
PRIOR_STRENGTH = 8.0
# Ridge penalty of the level regression.
LEVEL_ALPHA = 0.3
# Width (in levels) of the level softmax. The quality policy reads the spread as uncertainty and
# mixes the levels' P(correct): at width 1.0 a request estimated at exactly level 1 carried 0.21 of
# level 2, which in maths, coding and instruction (large 2b-9b gaps at level 2) tipped it to 4b
# (the 2b/4b boundary sat at e = 0.94-1.06 instead of near 1.5). At 0.3 every group's boundaries sit
# within 0.07 of halfway between levels: a request estimated at level k goes to size k. Chosen on the
# public tier sources' training halves (tier_probe.py), where it gave the best mean share on the
# issue's side (easy to 0.8b/2b, hard to 4b/9b); template CV exact cannot tell 0.3-1.0 apart
# (training/router/README.md, "The level spread").
LEVEL_WIDTH = 0.3
# Weight of the feature scorer's level in the level estimate (see _fit_level_head).
LEVEL_FEATURE_BLEND = 0.8


@dataclass
class TrainingReport:
    """What a training run did and how well the heads do on the held-out rows."""

    data: str
    train_rows: int = 0
    heldout: dict[str, dict[str, float]] = field(default_factory=dict)
    correct_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"data: {self.data}", f"train rows: {self.train_rows}"]
        for split, figures in self.heldout.items():
            out.append(
                f"held-out {split}: {int(figures['rows'])} rows, level exact {figures['level_exact']:.3f}, "
                f"within one {figures['level_within_one']:.3f}, family {figures['family']:.3f}"
            )
        if self.correct_rows:
            out.append(f"quality table refined from {self.correct_rows} rows with per-size correctness")
        return out + self.notes


def _require_labels(rows: Sequence[LabeledRow], path: str | Path) -> None:
    for row in rows:
        missing = [name for name in ("level", "family", "group") if getattr(row, name) is None]
        if row.level is None and row.size is not None:
            missing.remove("level")
        if missing:
            raise DatasetError(f"{path}:{row.line}: a training row needs {', '.join(missing)}")


def _level(row: LabeledRow) -> int:
    return row.level if row.level is not None else SIZES.index(row.size)


def _phrasing_weights(rows: Sequence[LabeledRow]) -> np.ndarray:
    counts: dict[str | None, int] = {}
    for row in rows:
        counts[row.phrasing] = counts.get(row.phrasing, 0) + 1
    weights = np.asarray([1.0 if r.phrasing is None else 1.0 / counts[r.phrasing] for r in rows])
    return weights / weights.mean()


def _feature_scorer_level(mean: np.ndarray, scale: np.ndarray, embedding_dim: int) -> tuple[np.ndarray, float]:
    """The feature scorer's level position (4 * (bias + weights . features) - 0.5, unclipped) as a
    linear function of the heads' inputs (embedding, standardized features): (coef, intercept)."""
    weights = np.asarray([FEATURE_WEIGHTS.get(name, 0.0) for name in FEATURE_NAMES])
    coef = np.concatenate([np.zeros(embedding_dim), 4 * weights * scale])
    return coef, float(4 * (FEATURE_BIAS + weights @ mean) - 0.5)


def _fit_level_head(
    inputs: np.ndarray, levels: np.ndarray, weights: np.ndarray, prior: tuple[np.ndarray, float]
) -> LinearHead:
    from sklearn.linear_model import Ridge

    if len(set(levels.tolist())) < 2:
        raise ValueError("training needs rows of at least two different levels")
    model = Ridge(alpha=LEVEL_ALPHA).fit(inputs, levels, sample_weight=weights)
    # Blend the regressed level with the hand-set feature scorer's (better on unseen trivial prompts;
    # the weight was chosen by leave-families-out cross-validation). Both are linear in the inputs,
    # so the blend is one linear level estimate e.
    e_coef = (1 - LEVEL_FEATURE_BLEND) * model.coef_ + LEVEL_FEATURE_BLEND * prior[0]
    e_intercept = (1 - LEVEL_FEATURE_BLEND) * model.intercept_ + LEVEL_FEATURE_BLEND * prior[1]
    return level_softmax_head(e_coef, e_intercept)


def level_softmax_head(e_coef: np.ndarray, e_intercept: float) -> LinearHead:
    """The level head for a linear level estimate e = e_coef . inputs + e_intercept: a softmax over
    levels centred on e, of width `LEVEL_WIDTH`."""
    k = np.arange(LEVELS, dtype=np.float64)
    # softmax_k(-(k - e)^2 / w^2) == softmax_k((2k e - k^2) / w^2): the e^2 term is the same for all k.
    coef = np.outer(2 * k, e_coef) / LEVEL_WIDTH**2
    intercept = (2 * k * e_intercept - k**2) / LEVEL_WIDTH**2
    return LinearHead(classes=tuple(str(i) for i in range(LEVELS)), coef=coef, intercept=intercept)


def _fit_head(
    inputs: np.ndarray, labels: Sequence[str], classes: Sequence[str], c: float, weights: np.ndarray
) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    index = {name: i for i, name in enumerate(classes)}
    y = np.asarray([index[label] for label in labels])
    if len(set(y.tolist())) < 2:
        raise ValueError("training needs rows of at least two different classes per head")
    model = LogisticRegression(C=c, max_iter=3000)
    model.fit(inputs, y, sample_weight=weights)
    # Classes absent from the training rows get zero weights and a very low bias: never predicted.
    coef = np.zeros((len(classes), inputs.shape[1]))
    intercept = np.full(len(classes), -30.0)
    if len(model.classes_) == 2:
        # A binary model gives one logit (second class against the first); softmax over (0, logit) matches it.
        low, high = model.classes_
        coef[high], intercept[high], intercept[low] = model.coef_[0], model.intercept_[0], 0.0
    else:
        for row, cls in enumerate(model.classes_):
            coef[cls], intercept[cls] = model.coef_[row], model.intercept_[row]
    return LinearHead(classes=tuple(classes), coef=coef, intercept=intercept)


def fit_artifact(
    rows: Sequence[LabeledRow], embedder: Embedder, settings: EmbeddingSettings, c: float = 1.0
) -> LearnedArtifact:
    """Fit the level and family heads on labeled rows (each with level, family and group).

    Raises:
        ValueError: with fewer than two distinct levels or families.
    """
    embeddings = embedder.encode([embedding_text(r.request) for r in rows])
    features = feature_matrix([extract_features(r.request) for r in rows])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    inputs = np.hstack([embeddings, (features - mean) / scale])
    families = sorted({r.family for r in rows})
    weights = _phrasing_weights(rows)
    return LearnedArtifact(
        feature_names=FEATURE_NAMES,
        feature_mean=mean.astype(np.float64),
        feature_scale=scale.astype(np.float64),
        level=_fit_level_head(
            inputs,
            np.asarray([_level(r) for r in rows], dtype=np.float64),
            weights,
            _feature_scorer_level(mean, scale, embeddings.shape[1]),
        ),
        family=_fit_head(inputs, [r.family for r in rows], families, c, weights),
        family_groups={r.family: r.group for r in rows},
        embedding=settings,
    )


def heldout_figures(scorer: LearnedScorer, rows: Sequence[LabeledRow]) -> dict[str, float]:
    """Level exact / within-one accuracy and family accuracy of a scorer on labeled rows."""
    results = scorer.score_many([r.request for r in rows])
    predicted = np.asarray([int(np.argmax(r.levels)) for r in results])
    truth = np.asarray([_level(r) for r in rows])
    family = np.mean([res.family == row.family for res, row in zip(results, rows, strict=True)])
    return {
        "rows": float(len(rows)),
        "level_exact": float((predicted == truth).mean()),
        "level_within_one": float((np.abs(predicted - truth) <= 1).mean()),
        "family": float(family),
    }


def fit_quality(
    scorer: LearnedScorer, rows: Sequence[LabeledRow], prior: QualityTable, strength: float = PRIOR_STRENGTH
) -> QualityTable:
    """Refine the prior table with rows that carry per-size correctness (see the module docstring).

    Rows with a `group` / `level` label use them; others use the scorer's probabilities.
    """
    results = scorer.score_many([r.request for r in rows])
    groups = prior.groups
    sums = {g: np.zeros((LEVELS, len(SIZES))) for g in groups}
    weights = {g: np.zeros((LEVELS, len(SIZES))) for g in groups}
    for row, result in zip(rows, results, strict=True):
        group_probs = {row.group: 1.0} if row.group in groups else result.groups
        level_probs = np.eye(LEVELS)[row.level] if row.level is not None else np.asarray(result.levels)
        for group, gp in group_probs.items():
            if group not in groups:
                continue
            for s_index, size in enumerate(SIZES):
                if size in row.correct:
                    sums[group][:, s_index] += gp * level_probs * row.correct[size]
                    weights[group][:, s_index] += gp * level_probs
    cells = {}
    for group in groups:
        cells[group] = [
            {
                size: float(
                    (strength * prior.cells[group][k][size] + sums[group][k, s])
                    / (strength + weights[group][k, s])
                )
                for s, size in enumerate(SIZES)
            }
            for k in range(LEVELS)
        ]
    return QualityTable(cells=cells, source=f"model-card priors refined by {len(rows)} labeled rows")


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def train(
    labeled: str | Path | Sequence[str | Path] | None,
    out: str | Path | None = None,
    *,
    correct: str | Path | None = None,
    base: str | Path | None = None,
    embedder: Embedder | None = None,
    settings: EmbeddingSettings | None = None,
    c: float = 1.0,
) -> tuple[LearnedArtifact, TrainingReport, Path]:
    """Train heads on `labeled` and/or refine the quality table from `correct`, then save.

    Args:
        labeled: JSONL with level/family/group labels (training/router/data/prompts.jsonl), or
            several such files trained on together; None keeps the heads of `base`.
        out: where to write the artifact; None overwrites the packaged default.
        correct: JSONL rows with per-size `correct` (the output of `router label`).
        base: the artifact whose heads are kept when `labeled` is None (default: the packaged one).
        embedder: the embedding model; None builds the offline MiniLM one for `settings`.
        settings: embedding settings (token budget, int8).
        c: inverse regularization strength of the logistic regressions.

    Returns:
        (artifact, report, path written).

    Raises:
        DatasetError: naming the file and line of a bad row.
        ValueError: when there is nothing to train on.
    """
    if labeled is None:
        labeled_paths: list[Path] = []
    elif isinstance(labeled, str | Path):
        labeled_paths = [Path(labeled)]
    else:
        labeled_paths = [Path(p) for p in labeled]
    if not labeled_paths and correct is None:
        raise ValueError("give labeled prompts, --correct rows, or both")
    settings = settings or EmbeddingSettings()
    sources = [*labeled_paths, *([Path(correct)] if correct is not None else [])]
    report = TrainingReport(data=", ".join(p.name for p in sources))
    correct_rows = load_rows(correct, require_label=True) if correct is not None else []
    if any(r.correct is None for r in correct_rows):
        bad = next(r for r in correct_rows if r.correct is None)
        raise DatasetError(f"{correct}:{bad.line}: a --correct row needs `correct`")
    if labeled_paths:
        rows = []
        for path in labeled_paths:
            file_rows = load_rows(path, require_label=True)
            _require_labels(file_rows, path)
            rows += file_rows
        train_rows = [r for r in rows if not r.heldout]
        if not train_rows:
            names = ", ".join(str(p) for p in labeled_paths)
            raise ValueError(f"{names}: no training rows (every row is held out)")
        if embedder is None:
            from deployments.router.embeddings import SentenceEmbedder

            embedder = SentenceEmbedder.for_settings(settings)
        artifact = fit_artifact(train_rows, embedder, settings, c)
        scorer = LearnedScorer(artifact, embedder)
        report.train_rows = len(train_rows)
        for split in sorted({r.split for r in rows if r.heldout}):
            report.heldout[split] = heldout_figures(scorer, [r for r in rows if r.split == split])
    else:
        artifact = LearnedArtifact.load(base)
        scorer = LearnedScorer(artifact, embedder)
    if correct_rows:
        artifact.quality = fit_quality(scorer, correct_rows, artifact.quality or prior_table())
        report.correct_rows = len(correct_rows)
    previous = dict(artifact.training) if not labeled_paths else {}
    artifact.training = {
        **previous,
        "data": [p.name for p in sources],
        "data_sha256": _sha256(*sources),
        "trained_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": f"level: ridge regression (alpha {LEVEL_ALPHA}) blended {LEVEL_FEATURE_BLEND} with the "
        f"feature scorer level, as a softmax of width {LEVEL_WIDTH}; "
        "family: multinomial logistic regression (scikit-learn); each phrasing weighs the same",
        "C": c,
        "train_rows": report.train_rows or previous.get("train_rows"),
        "correct_rows": report.correct_rows,
        "heldout": {k: {n: round(v, 4) for n, v in f.items()} for k, f in report.heldout.items()}
        or previous.get("heldout", {}),
    }
    written = artifact.save(out if out is not None else DEFAULT_ARTIFACT)
    return artifact, report, written
