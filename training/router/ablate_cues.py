"""Ablation of the hand-written cue features for the difficulty scorer (issue 28, item 4).

    python training/router/ablate_cues.py [--cache .cache/router-training] [--out ablation.md]

Leave-one-source-out (pipelines/router_training/loso.py) with the embedding and the structural
signals only, then with each cue feature of deployments/router/features.py added alone, then with
all of them: a cue earns its place only if adding it raises the mean held-out APGR or Spearman.
Prints a Markdown table (the one in training/router/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from deployments.router.artifact import EmbeddingSettings
from deployments.router.difficulty import CUE_PREFIX
from deployments.router.features import FEATURE_NAMES
from deployments.router.signals import SIGNAL_NAMES
from pipelines.router_training.difficulty_training import (
    DEFAULT_MODELS,
    DEFAULT_PUBLIC,
    DEFAULT_TEMPLATES,
    evaluate_sources,
    load_corpus,
)
from pipelines.router_training.irt_training import RIDGE_ALPHA


def figures(report) -> tuple[float, float, float]:
    """Mean LOSO APGR, mean Spearman over sources, template exact."""
    spearmans = [s.spearman for s in report.sources if s.spearman is not None]
    return report.mean_apgr or float("nan"), float(np.mean(spearmans)), report.tiers.get("exact", float("nan"))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/router-training"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    corpus = load_corpus(DEFAULT_PUBLIC, DEFAULT_TEMPLATES, None, EmbeddingSettings(), args.cache)
    runs = {"embedding + structural signals": list(SIGNAL_NAMES)}
    runs.update({f"+ cue {name}": [*SIGNAL_NAMES, CUE_PREFIX + name] for name in FEATURE_NAMES})
    runs["+ every cue"] = [*SIGNAL_NAMES, *(CUE_PREFIX + n for n in FEATURE_NAMES)]
    lines = ["| inputs | LOSO APGR (mean of sources) | Spearman (mean of sources) | template exact |", "|---|---|---|---|"]
    base = None
    for label, names in runs.items():
        start = time.time()
        report, _ = evaluate_sources(corpus, DEFAULT_MODELS, names, RIDGE_ALPHA, args.cache, with_groups=False)
        apgr, rho, exact = figures(report)
        base = base or (apgr, rho, exact)
        delta = "" if label.startswith("embedding") else f" ({apgr - base[0]:+.3f} / {rho - base[1]:+.3f} / {exact - base[2]:+.3f})"
        lines.append(f"| {label} | {apgr:.3f} | {rho:.3f} | {exact:.3f}{delta} |")
        print(lines[-1], f"[{time.time() - start:.0f} s]", flush=True)
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
