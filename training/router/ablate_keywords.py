"""Ablation of the keyword lists behind the shipped level/family-head scorer (issue 28, item 4).

    python training/router/ablate_keywords.py --mirror DIR [--cache .cache/router-training]
        [--variants baseline,unfired,...]

Each variant drops entries from the tables of deployments/router/keywords.py (patched in memory),
retrains the shipped recipe (pipelines.router_training.training.fit_artifact) and measures what a
keyword is for, on data the recipe never trains on:
- `CV`: leave-families-out exact size over the training families (cross_validate.py's protocol);
- `held-out templates`: the two held-out template splits (exact, within one, rubric 0.8b/2b rows
  sent to 0.8b/2b, rubric 4b/9b rows sent to 4b/9b) after a fit on the whole training split;
- `public tiers`: the maths prompts of known tier (tier_probe.py's sources): tier 0-1 sent to
  0.8b/2b, tier 2-3 sent to 4b/9b, mean over sources;
- `public answers`: Spearman of the routed difficulty with the IRT difficulty of every public
  question, and APGR by difficulty over the adjacent ladder pairs (mean over sources).
A list earns its place only if dropping it lowers these figures by more than their noise.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cross_validate import CachedEmbedder, cross_validate  # noqa: E402
from tier_probe import tier_rows  # noqa: E402

from cluster.catalog import SIZES  # noqa: E402
from cluster.router_config import RouterConfig  # noqa: E402
from deployments.router import features, keywords  # noqa: E402
from deployments.router.artifact import EmbeddingSettings, difficulty_from_levels  # noqa: E402
from deployments.router.features import extract_features  # noqa: E402
from deployments.router.learned import LearnedScorer, feature_matrix  # noqa: E402
from deployments.router.router import Router  # noqa: E402
from deployments.router.routing_input import RoutingInput  # noqa: E402
from pipelines.router_training import training  # noqa: E402
from pipelines.router_training.dataset import load_rows  # noqa: E402
from pipelines.router_training.difficulty_training import (  # noqa: E402
    DEFAULT_MODELS,
    DEFAULT_PUBLIC,
    DEFAULT_TEMPLATES,
    load_corpus,
)
from pipelines.router_training.evaluation import apgr, evaluate, spearman  # noqa: E402
from pipelines.router_training.irt_training import TEMPLATE_SOURCE, fit_answers, public_request  # noqa: E402
from pipelines.router_training.loso import MIN_PAIR_GAP  # noqa: E402
from pipelines.router_training.public_table import ladders, load_models, load_table  # noqa: E402

# The keyword tables: name -> how to read and replace the table in keywords.py.
TABLES = (
    "FAMILY_WORDS",
    "PHRASES",
    "HIGHER_ORDER_STEMS",
    "CONJUNCTIONS",
    "CONDITION_OPENERS",
    "GATED_CODE_WORDS",
    "FOREIGN_WORDS",
)
Removal = dict[str, set[str]]  # "FAMILY_WORDS:math" or "FOREIGN_WORDS" -> entries dropped


def table_entries() -> dict[str, tuple[str, ...]]:
    """Every keyword list of keywords.py as `TABLE` or `TABLE:family` -> entries."""
    out: dict[str, tuple[str, ...]] = {}
    for name in TABLES:
        value = getattr(keywords, name)
        if isinstance(value, dict):
            out.update({f"{name}:{family}": tuple(words) for family, words in value.items()})
        else:
            out[name] = tuple(value)
    return out


@contextmanager
def patched(removal: Removal) -> Iterator[None]:
    """keywords.py's tables (and what features.py derived from them) without `removal`'s entries."""
    saved = {name: getattr(keywords, name) for name in TABLES}
    saved_derived = features._WORD_FAMILY
    try:
        for name in TABLES:
            value = saved[name]
            if isinstance(value, dict):
                new = {
                    f: tuple(w for w in ws if w not in removal.get(f"{name}:{f}", ()))
                    for f, ws in value.items()
                }
            else:
                new = type(value)(w for w in value if w not in removal.get(name, ()))
            setattr(features, name, new)
        features._WORD_FAMILY = features.word_families(features.FAMILY_WORDS, features.GATED_CODE_WORDS)
        yield
    finally:
        for name in TABLES:
            setattr(features, name, saved[name])
        features._WORD_FAMILY = saved_derived


def fired(texts: Sequence[str]) -> set[tuple[str, str]]:
    """(list, entry) pairs that occur where features.py reads them in at least one of `texts` (a word
    among the cue text's words, a phrase in it, a stem opening a word of the instruction's head, a
    foreign word in the language sample). An entry that occurs nowhere changes no feature."""
    tables = table_entries()
    out: set[tuple[str, str]] = set()
    for text in texts:
        request = RoutingInput(query=text)
        lowered = request.cue_text().lower()
        words = set(features._WORD.findall(lowered))
        head = features.instruction_head(request)
        head_words = set(features._WORD.findall(head))
        sample = set(features._WORD.findall(request.query[: features.LANGUAGE_SAMPLE_CHARS].lower()))
        for table, entries in tables.items():
            for entry in entries:
                if table.startswith(("FAMILY_WORDS", "GATED_CODE_WORDS")):
                    hit = entry in words
                elif table.startswith("PHRASES"):
                    hit = entry in lowered
                elif table == "HIGHER_ORDER_STEMS":
                    hit = any(w.startswith(entry) for w in head_words)
                elif table == "CONJUNCTIONS":
                    hit = entry in head
                elif table == "CONDITION_OPENERS":
                    hit = entry in head_words
                else:
                    hit = entry in sample
                if hit:
                    out.add((table, entry))
    return out


class Bench:
    """The data every variant is measured on, embedded once."""

    def __init__(self, mirror: Path, cache: Path, per_source: int) -> None:
        from deployments.router.embeddings import SentenceEmbedder

        rows = load_rows(DEFAULT_TEMPLATES, require_label=True)
        self.train = [r for r in rows if not r.heldout]
        self.heldout = [r for r in rows if r.heldout]
        tiers, _ = tier_rows(mirror, per_source, seed=0)
        self.tiers = tiers
        settings = EmbeddingSettings()
        self.settings = settings
        self.embedder = CachedEmbedder(SentenceEmbedder.for_settings(settings))
        corpus = load_corpus(DEFAULT_PUBLIC, DEFAULT_TEMPLATES, None, settings, cache)
        self.public = np.flatnonzero([not s.startswith(TEMPLATE_SOURCE) for s in corpus.sources])
        self.corpus = corpus
        full = fit_answers(corpus, self.public, cache)
        position = {item: k for k, item in enumerate(full.items)}
        self.irt_b = np.asarray([full.difficulty[position[corpus.ids[k]]] for k in self.public])
        by_id = {r.id: r for r in load_table(DEFAULT_PUBLIC)}
        self.public_requests = [public_request(by_id[corpus.ids[k]]) for k in self.public]
        self.models = load_models(DEFAULT_MODELS)

    def measure(self, removal: Removal, folds: int = 5) -> dict[str, float]:
        """Every figure of one variant."""
        out: dict[str, float] = {}
        config = RouterConfig()
        with patched(removal):
            cv = cross_validate(self.train, self.embedder, folds, 0, self.settings)
            report = evaluate(cv["rows"], cv["learned"], SIZES)
            out["cv_exact"] = report.accuracy
            artifact = training.fit_artifact(self.train, self.embedder, self.settings)
            router = Router(config, SIZES, scorer=LearnedScorer(artifact, self.embedder))
            decisions = router.decide_many([r.request for r in self.heldout])
            report = evaluate(self.heldout, decisions, SIZES)
            out["ho_exact"], out["ho_within"] = report.accuracy, report.within_one
            index = {s: k for k, s in enumerate(SIZES)}
            sizes = [index[d.size] for d in decisions]
            rubric = [index[r.size] for r in self.heldout]
            out["ho_easy_small"] = np.mean([s <= 1 for s, r in zip(sizes, rubric, strict=True) if r <= 1])
            out["ho_hard_large"] = np.mean([s >= 2 for s, r in zip(sizes, rubric, strict=True) if r >= 2])
            easy, hard = [], []
            for rows in self.tiers.values():
                chosen = [index[d.size] for d in router.decide_many([r.request for r in rows])]
                if rows[0].level <= 1:
                    easy.append(np.mean([s <= 1 for s in chosen]))
                else:
                    hard.append(np.mean([s >= 2 for s in chosen]))
            out["tier_easy_small"], out["tier_hard_large"] = float(np.mean(easy)), float(np.mean(hard))
            cues = feature_matrix([extract_features(r) for r in self.public_requests], artifact.feature_names)
            embeddings = self.corpus.embeddings[self.public]
            difficulty = difficulty_from_levels(
                artifact.level.probabilities(artifact.inputs(embeddings, cues))
            )
        sources = self.corpus.sources[self.public]
        rhos, apgrs = [], []
        for source in sorted(set(sources)):
            rows = np.flatnonzero(sources == source)
            rhos.append(spearman(difficulty[rows], self.irt_b[rows]))
            correct = [self.corpus.correct[self.public[k]] for k in rows]
            for weak, strong in ladders(self.models, {m for c in correct for m in c}):
                both = [j for j, c in enumerate(correct) if weak in c and strong in c]
                w = np.asarray([correct[j][weak] for j in both], dtype=float)
                s = np.asarray([correct[j][strong] for j in both], dtype=float)
                if len(both) >= 20 and s.mean() - w.mean() >= MIN_PAIR_GAP:
                    apgrs.append(apgr(difficulty[rows[both]], w, s))
        out["public_spearman"], out["public_apgr"] = float(np.mean(rhos)), float(np.mean(apgrs))
        return out


COLUMNS = (
    ("cv_exact", "CV exact"),
    ("ho_exact", "held-out exact"),
    ("ho_within", "held-out within one"),
    ("ho_easy_small", "held-out easy to 0.8b/2b"),
    ("ho_hard_large", "held-out hard to 4b/9b"),
    ("tier_easy_small", "tiers easy to 0.8b/2b"),
    ("tier_hard_large", "tiers hard to 4b/9b"),
    ("public_spearman", "public Spearman"),
    ("public_apgr", "public APGR"),
)


def variants(bench: Bench) -> dict[str, Callable[[], Removal]]:
    """Named removals; `unfired` drops what changes no feature of any row measured here."""
    texts = (
        [r.request.query for r in bench.train + bench.heldout]
        + [r.request.query for rows in bench.tiers.values() for r in rows]
        + [r.query for r in bench.public_requests]
    )
    train_texts = [r.request.query for r in bench.train]
    # What occurs in the data is the same for every variant: found once, when a variant first asks.
    found = functools.cache(lambda train: fired(train_texts if train else texts))

    def unfired(train_only: str | None = None) -> Callable[[], Removal]:
        """Every entry that occurs in no measured text; for the `train_only` table, in no training text."""

        def removal() -> Removal:
            return {
                table: {e for e in entries if (table, e) not in found(table == train_only)}
                for table, entries in table_entries().items()
            }

        return removal

    out: dict[str, Callable[[], Removal]] = {"baseline": dict, "unfired": unfired()}
    for table, entries in table_entries().items():
        out[f"drop {table}"] = lambda table=table, entries=entries: {table: set(entries)}
        out[f"{table} train-fired only"] = unfired(train_only=table)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True, help="folder of owner+name/repo snapshots")
    parser.add_argument("--cache", type=Path, default=Path(".cache/router-training"))
    parser.add_argument("--per-source", type=int, default=200)
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    args = parser.parse_args(argv)
    bench = Bench(args.mirror, args.cache, args.per_source)
    known = variants(bench)
    names = list(known) if args.variants == "all" else args.variants.split(",")
    print("| variant | entries left | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    total = sum(len(v) for v in table_entries().values())
    for name in names:
        start = time.time()
        removal = known[name]()
        left = total - sum(len(v) for v in removal.values())
        figures = bench.measure(removal)
        cells = " | ".join(f"{figures[key]:.3f}" for key, _ in COLUMNS)
        print(f"| {name} | {left} | {cells} |  [{time.time() - start:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
