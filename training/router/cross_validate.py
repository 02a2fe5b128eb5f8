"""Leave-families-out cross-validation of the router's training recipe (how its settings are chosen).

`python training/router/cross_validate.py [--folds 5] [--weight demand=0.7 ...]`

Splits the TRAINING families (never a held-out split) into folds; for each fold it trains the level
and family heads on the other families with `pipelines.router_training.training.fit_artifact`, routes the
fold's rows with the quality policy of the built-in router config, and prints the pooled figures that
`router eval` reports, for the learned scorer and for the feature scorer alone. `--weight NAME=VALUE`
tries a feature weight other than the shipped one; `--blend` another share of the feature scorer's
level in the learned level. Choose settings here; report the held-out split once, with `router eval`.
Embeddings are computed once per distinct text and reused by every fold.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cluster.catalog import SIZES  # noqa: E402
from cluster.router_config import RouterConfig  # noqa: E402
from deployments.router import scorers  # noqa: E402
from deployments.router.artifact import EmbeddingSettings  # noqa: E402
from deployments.router.learned import LearnedScorer  # noqa: E402
from deployments.router.router import Router  # noqa: E402
from pipelines.router_training import training  # noqa: E402
from pipelines.router_training.dataset import LabeledRow, load_rows  # noqa: E402
from pipelines.router_training.evaluation import evaluate  # noqa: E402

DATA = ROOT / "training" / "router" / "data" / "prompts.jsonl"


class CachedEmbedder:
    """Embeds each distinct text once; every fold then reads the cache."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            for text, vector in zip(missing, self.embedder.encode(missing, batch_size), strict=True):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts])


def family_folds(rows: Sequence[LabeledRow], folds: int, seed: int) -> list[set[str]]:
    """The training families dealt into `folds` groups in a seeded random order."""
    names = sorted({r.family for r in rows})
    order = np.random.RandomState(seed).permutation(len(names))
    return [{names[j] for j in order[i::folds]} for i in range(folds)]


def cross_validate(
    rows: Sequence[LabeledRow], embedder, folds: int, seed: int, settings: EmbeddingSettings | None = None
) -> dict[str, list]:
    """Decisions of the learned and feature scorers for every training row, each from the fold
    that did not train on the row's family."""
    config = RouterConfig()
    out: dict[str, list] = {"rows": [], "learned": [], "features": []}
    for fold in family_folds(rows, folds, seed):
        fit_rows = [r for r in rows if r.family not in fold]
        test_rows = [r for r in rows if r.family in fold]
        artifact = training.fit_artifact(fit_rows, embedder, settings or EmbeddingSettings())
        requests = [r.request for r in test_rows]
        learned = Router(config, SIZES, scorer=LearnedScorer(artifact, embedder))
        feature_only = Router(config, SIZES, scorer=scorers.FeatureScorer())
        out["rows"] += test_rows
        out["learned"] += learned.decide_many(requests)
        out["features"] += feature_only.decide_many(requests)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--blend", type=float, default=None, help="share of the feature level")
    parser.add_argument("--layers", type=int, default=None, help="MiniLM layers embedded (default: shipped)")
    args = parser.parse_args(argv)
    shipped = dict(scorers.FEATURE_WEIGHTS)
    weights = dict(shipped)
    for item in args.weight:
        name, _, value = item.partition("=")
        if name not in weights:
            parser.error(f"unknown feature {name!r}; valid: {', '.join(weights)}")
        weights[name] = float(value)
    # The training recipe and the feature scorer read these module constants.
    scorers.FEATURE_WEIGHTS = training.FEATURE_WEIGHTS = weights
    if args.blend is not None:
        training.LEVEL_FEATURE_BLEND = args.blend

    from deployments.router.embeddings import SentenceEmbedder

    rows = [r for r in load_rows(args.data, require_label=True) if not r.heldout]
    settings = EmbeddingSettings() if args.layers is None else EmbeddingSettings(layers=args.layers)
    embedder = CachedEmbedder(SentenceEmbedder.for_settings(settings))
    result = cross_validate(rows, embedder, args.folds, args.seed, settings)
    changed = {k: v for k, v in weights.items() if v != shipped[k]}
    print(
        f"{len(rows)} training rows, {args.folds} folds of families, {settings.layers} MiniLM layers; "
        f"weights {changed or 'as shipped'}"
    )
    for scorer in ("learned", "features"):
        report = evaluate(result["rows"], result[scorer], SIZES)
        print(
            f"{scorer:>8}: exact {report.accuracy:.3f}  within one {report.within_one:.3f}  "
            f"Spearman {report.spearman:.3f}  9b->4b/9b {report.hard_to_large:.3f}  "
            f"0.8b->0.8b {report.trivial_to_smallest:.3f}  cost {report.relative_cost:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
