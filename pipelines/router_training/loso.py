"""Leave-one-source-out evaluation of the difficulty scorer (`router eval --loso`, `router train`).

Each public source is held out in turn: the item-response model and the regressions are fitted on
the other sources (and the templates), and on the held-out source the predicted difficulty is
judged two ways:
- APGR (RouteLLM) of every adjacent size pair of every model ladder (one family, several sizes)
  answering that source: the predicted difficulty ranks the questions, the hardest go to the
  larger model first;
- Spearman of the predicted difficulty with the item-response difficulty of the full fit.
The template rows held out by their split give the tier figures (policy choice against the rubric
size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from cluster.catalog import SIZES
from deployments.router.quality import choose_size
from pipelines.router_training.evaluation import apgr, spearman
from pipelines.router_training.irt import IrtFit
from pipelines.router_training.irt_training import (
    TEMPLATE_SOURCE,
    TOLERANCE,
    Corpus,
    FoldFit,
    train_fold,
)
from pipelines.router_training.public_table import ModelInfo, ladders

GOAL_APGR = 0.65
# A pair whose two models' accuracies differ by less than this has no gap to recover.
MIN_PAIR_GAP = 0.03


@dataclass
class SourceFigures:
    """One held-out source's figures."""

    source: str
    rows: int
    pairs: dict[str, float] = field(default_factory=dict)  # "weak>strong" -> APGR
    spearman: float | None = None
    residual_sd: float = 0.0
    skipped_pairs: list[str] = field(default_factory=list)

    @property
    def apgr(self) -> float | None:
        """Mean APGR over the source's adjacent pairs."""
        return float(np.mean(list(self.pairs.values()))) if self.pairs else None


@dataclass
class LosoReport:
    """Every held-out source's figures and the template tier figures."""

    sources: list[SourceFigures]
    tiers: dict[str, float] = field(default_factory=dict)

    @property
    def mean_apgr(self) -> float | None:
        """Mean of the per-source APGR (each source weighs the same)."""
        values = [s.apgr for s in self.sources if s.apgr is not None]
        return float(np.mean(values)) if values else None

    def goals_met(self) -> bool:
        """APGR >= GOAL_APGR on average and on every source."""
        values = [s.apgr for s in self.sources if s.pairs]
        return bool(values) and all(v >= GOAL_APGR for v in values) and (self.mean_apgr or 0) >= GOAL_APGR

    def lines(self) -> list[str]:
        """The report as printable lines."""
        out = ["leave-one-source-out (each public source held out in turn):"]
        out.append(f"  {'source':<16} {'rows':>6} {'APGR':>6} {'Spearman':>9}  pairs")
        for s in self.sources:
            pairs = ", ".join(f"{k} {v:.3f}" for k, v in s.pairs.items())
            if s.skipped_pairs:
                pairs += f" (no gap: {', '.join(s.skipped_pairs)})"
            out.append(
                f"  {s.source:<16} {s.rows:6d} {_fmt(s.apgr):>6} {_fmt(s.spearman):>9}  {pairs}"
            )
        out.append(f"  mean APGR over sources: {_fmt(self.mean_apgr)} (goal >= {GOAL_APGR} on average and on each)")
        out.append(f"  goals: {'met' if self.goals_met() else 'NOT met'}")
        if self.tiers:
            out.append("template tier figures (held-out template rows, policy choice vs rubric size):")
            out += [f"  {k}: {v:.3f}" for k, v in self.tiers.items()]
        return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pair_gap(b: np.ndarray, a: np.ndarray, weak_accuracy: float, strong_accuracy: float) -> np.ndarray:
    """The predicted P(correct) gap between two models on items (b, a), each model placed by its
    accuracy on these items, as Qwen3.5's sizes are placed by their cards' figures."""
    theta_weak = _place(b, a, weak_accuracy)
    theta_strong = _place(b, a, strong_accuracy)
    return expit(a * (theta_strong - b)) - expit(a * (theta_weak - b))


def _place(b: np.ndarray, a: np.ndarray, accuracy: float) -> float:
    accuracy = min(max(accuracy, 0.01), 0.99)
    return float(brentq(lambda t: expit(a * (t - b)).mean() - accuracy, -30.0, 30.0))


def source_figures(
    corpus: Corpus,
    rows: np.ndarray,
    predicted: tuple[np.ndarray, np.ndarray],
    full: IrtFit,
    models: Mapping[str, ModelInfo],
) -> SourceFigures:
    """APGR of every adjacent ladder pair and Spearman with the full fit's difficulty on `rows`.

    `predicted` is (b, a) of each row. A pair is routed by its predicted gap (`pair_gap`): only the
    two models' accuracies on the source are known to it, never an item's answers. Pairs whose
    accuracies differ by less than `MIN_PAIR_GAP` are left out: APGR divides by that gap.
    """
    b, a = predicted
    source = str(corpus.sources[rows[0]])
    figures = SourceFigures(source=source, rows=len(rows))
    present = {m for k in rows for m in corpus.correct[k]}
    for weak, strong in ladders(models, present):
        both = [i for i, k in enumerate(rows) if weak in corpus.correct[k] and strong in corpus.correct[k]]
        if len(both) < 20:
            continue
        weak_correct = np.asarray([corpus.correct[rows[i]][weak] for i in both], dtype=float)
        strong_correct = np.asarray([corpus.correct[rows[i]][strong] for i in both], dtype=float)
        if strong_correct.mean() - weak_correct.mean() < MIN_PAIR_GAP:
            figures.skipped_pairs.append(f"{weak}>{strong}")
            continue
        gap = pair_gap(b[both], a[both], weak_correct.mean(), strong_correct.mean())
        value = apgr(gap, weak_correct, strong_correct)
        if value is not None:
            figures.pairs[f"{weak}>{strong}"] = value
    position = {item: k for k, item in enumerate(full.items)}
    truth = [full.difficulty[position[corpus.ids[k]]] for k in rows]
    figures.spearman = spearman(b, truth)
    figures.residual_sd = float(np.std(b - np.asarray(truth)))
    return figures


def tier_figures(fold: FoldFit, corpus: Corpus, rows: np.ndarray, tolerance: float = TOLERANCE) -> dict[str, float]:
    """Policy choice against rubric size on template rows `rows` (exact, within one, easy rows to
    0.8b/2b, hardest rows to 4b/9b, Spearman of b with the level)."""
    if rows.size == 0:
        return {}
    b = fold.heads.predict_b(corpus, rows)
    a = float(np.median(fold.irt.discrimination))
    theta = np.asarray([fold.abilities[s] for s in SIZES])
    chosen = np.asarray(
        [
            SIZES.index(choose_size(dict(zip(SIZES, 1 / (1 + np.exp(-a * (theta - v))), strict=True)), SIZES, tolerance))
            for v in b
        ]
    )
    truth = corpus.levels[rows]
    figures = {
        "rows": float(rows.size),
        "exact": float((chosen == truth).mean()),
        "within_one": float((np.abs(chosen - truth) <= 1).mean()),
        "spearman": spearman(b, truth) or 0.0,
    }
    easy, hard = truth <= 1, truth == len(SIZES) - 1
    if easy.any():
        figures["easy_to_small"] = float((chosen[easy] <= 1).mean())
    if hard.any():
        figures["hard_to_large"] = float((chosen[hard] >= len(SIZES) - 2).mean())
    return figures


def leave_one_source_out(
    corpus: Corpus,
    full: FoldFit,
    models: Mapping[str, ModelInfo],
    input_names: Sequence[str],
    alpha: float | None = None,
    cache: Path | None = None,
    with_groups: bool = True,
) -> tuple[LosoReport, list[FoldFit]]:
    """Hold out each public source in turn (see the module docstring); `full` is the fit on every
    source (the Spearman reference and the abilities' anchor)."""
    is_public = np.asarray([not s.startswith(TEMPLATE_SOURCE) for s in corpus.sources])
    templates = np.flatnonzero(corpus.sources == TEMPLATE_SOURCE)
    figures, folds = [], []
    kwargs: dict = {"cache": cache, "with_groups": with_groups}
    if alpha is not None:
        kwargs["alpha"] = alpha
    for source in sorted(set(corpus.sources[is_public])):
        held = np.flatnonzero(corpus.sources == source)
        train = np.flatnonzero(is_public & (corpus.sources != source))
        fold = train_fold(corpus, train, templates, input_names, reference=(full.irt, full.abilities), **kwargs)
        figures.append(source_figures(corpus, held, fold.heads.predict(corpus, held), full.irt, models))
        folds.append(fold)
    heldout_templates = np.flatnonzero(np.char.startswith(corpus.sources.astype(str), f"{TEMPLATE_SOURCE}:"))
    return LosoReport(figures, tier_figures(full, corpus, heldout_templates)), folds
