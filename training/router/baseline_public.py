"""The shipped level/family-head scorer on the public sources, for comparison with the difficulty
scorer's leave-one-source-out figures (it never saw the public data, so every source is held out).

    python training/router/baseline_public.py [--cache .cache/router-training]

Per source: APGR of every adjacent ladder pair, routing by the scorer's difficulty (the hardest
questions to the larger model first: what `x-qwen-difficulty` gives) and by the predicted gap of the
pair with the difficulty read as an item difficulty (loso.pair_gap); Spearman with the IRT difficulty.

Two reference columns read the IRT fit of these very answers (so they know the answers; no scorer
can): APGR ranked by the fitted difficulty b, hardest first (the best a difficulty ranking can do,
which is what ranking by `x-qwen-difficulty` is), and ranked by the fitted gain of the pair,
P(strong) - P(weak) from the two models' fitted abilities (what a router that knew each item's
difficulty and routed by the pair's gap would reach). `--pairs` prints every pair with its two
accuracies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deployments.router.artifact import EmbeddingSettings, LearnedArtifact, difficulty_from_levels
from deployments.router.difficulty import CUE_PREFIX
from pipelines.router_training.difficulty_training import (
    DEFAULT_MODELS,
    DEFAULT_PUBLIC,
    DEFAULT_TEMPLATES,
    load_corpus,
)
from pipelines.router_training.evaluation import apgr, spearman
from pipelines.router_training.irt_training import TEMPLATE_SOURCE, fit_answers
from pipelines.router_training.loso import MIN_PAIR_GAP, pair_gap
from pipelines.router_training.public_table import ladders, load_models


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/router-training"))
    parser.add_argument("--pairs", action="store_true", help="print every pair, not only the means")
    args = parser.parse_args(argv)
    artifact = LearnedArtifact.load()
    settings = artifact.embedding
    corpus = load_corpus(DEFAULT_PUBLIC, DEFAULT_TEMPLATES, None, EmbeddingSettings(**settings.__dict__), args.cache)
    cues = corpus.columns([CUE_PREFIX + n for n in artifact.feature_names])
    difficulty = difficulty_from_levels(artifact.level.probabilities(artifact.inputs(corpus.embeddings, cues)))
    models = load_models(DEFAULT_MODELS)
    public = np.flatnonzero([not s.startswith(TEMPLATE_SOURCE) for s in corpus.sources])
    full = fit_answers(corpus, public, args.cache)
    position = {item: k for k, item in enumerate(full.items)}
    theta = full.abilities()
    print(
        "| source | APGR by difficulty | APGR by pair gap | Spearman with IRT b "
        "| reference: APGR by fitted b, hardest first | reference: APGR by fitted gain |\n"
        "|---|---|---|---|---|---|"
    )
    pair_lines = []
    for source in sorted(set(corpus.sources[public])):
        rows = np.flatnonzero(corpus.sources == source)
        by_score, by_gap, by_true_b, by_true_gain = [], [], [], []
        for weak, strong in ladders(models, {m for k in rows for m in corpus.correct[k]}):
            both = [k for k in rows if weak in corpus.correct[k] and strong in corpus.correct[k]]
            w = np.asarray([corpus.correct[k][weak] for k in both], dtype=float)
            s = np.asarray([corpus.correct[k][strong] for k in both], dtype=float)
            if len(both) < 20 or s.mean() - w.mean() < MIN_PAIR_GAP:
                continue
            d = difficulty[both]
            items = np.asarray([position[corpus.ids[k]] for k in both])
            true_gain = full.probability(theta[strong], items) - full.probability(theta[weak], items)
            figures = (
                apgr(d, w, s),
                apgr(pair_gap(8 * (d - 0.5), np.ones_like(d), w.mean(), s.mean()), w, s),
                apgr(full.difficulty[items], w, s),
                apgr(true_gain, w, s),
            )
            for column, value in zip((by_score, by_gap, by_true_b, by_true_gain), figures, strict=True):
                column.append(value)
            pair_lines.append(
                f"| {source} | {weak} > {strong} | {w.mean():.2f} / {s.mean():.2f} | "
                + " | ".join(f"{v:.3f}" for v in figures)
                + " |"
            )
        rho = spearman(difficulty[rows], [full.difficulty[position[corpus.ids[k]]] for k in rows])
        fmt = lambda v: f"{np.mean(v):.3f}" if v else "n/a"  # noqa: E731
        print(
            f"| {source} | {fmt(by_score)} | {fmt(by_gap)} | {rho:.3f} | {fmt(by_true_b)} | {fmt(by_true_gain)} |"
        )
    if args.pairs:
        print(
            "\n| source | pair | accuracy weak / strong | APGR by difficulty | by pair gap "
            "| by fitted b | by fitted gain |\n|---|---|---|---|---|---|---|"
        )
        print("\n".join(pair_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
