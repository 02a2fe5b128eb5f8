"""How the router routes public prompts of known tier (maths, everyday instructions), what
retraining on them would do, and the tier rows the shipped artifact trains on.

    python training/router/tier_probe.py --mirror DIR [--per-source 200] [--recipes all]
        [--max-tokens 32 --layers 2] [--write-train PATH [--share 0.5]]

Reads public_tiers.yaml's sources from DIR (bare git snapshots, as build_public.py), drops rows that
match an evaluation question (public_sources.yaml's `exclusions`) and counts them, then samples
2 x `--per-source` prompts per source (seeded): the first half trains, the second half is held out
(all of a `probe_only` source is held out: it is never trained on).

`--write-train PATH` writes the first halves as labeled rows for `router train`, weighed so that
the tier sources together hold `--share` of the weight against the templates (each source the
same part; `weighed_sources`): training/router/data/public_tier_rows.jsonl is its output.

Prints, per source, the share of its held-out prompts each size gets, and how many reach the tier's
size, within one size, and the tier-0/1 "easy to 0.8b/2b" and tier-3 "hard to 4b/9b" shares:
- `shipped`: the shipped router (the demo profile's learned scorer and quality policy; `--recipes ""`
  prints only it);
- each recipe retrained on the templates' training split plus the public tier rows' training halves:
  `templates` (the shipped recipe on the templates alone: the same-run baseline), `tiers` (the
  shipped recipe, every tier row weighing as one template phrasing), `tiers-shareX` (the tier rows
  holding share X of the weight, as `--write-train` weighs them; the shipped artifact is
  `tiers-share0.5`; `tiers-share0.5-blend0.7` also sets the blend), `tiers-blendX` (blend X, e.g. `tiers-blend0.5`), `residualA` (the hand-set
  feature level plus a ridge fit, alpha A, of the residual on all inputs, added whole), `feature-residual`
  (the hand-set feature weights corrected by a ridge fit of the
  residual on the transparent features, alpha 1e4, then the same blend), `maths-gated` (the `tiers` fit, then a
  ridge fit, alpha 100, of the maths rows' level residual on the standardized features, added to the
  level estimate in proportion to the family head's probability of the maths group, so that other
  groups keep the shipped estimate). For each recipe also the template
  figures (5-fold leave-families-out CV over the training families, and the held-out template rows),
  the leave-one-source-out shares (trained without the source at all), and over all held-out tier
  rows, split half and source out, Spearman with the tier and the mean tier exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from build_public import exclusion_questions, git_file  # noqa: E402
from cross_validate import CachedEmbedder, family_folds  # noqa: E402

from cluster.catalog import SIZES  # noqa: E402
from cluster.router_config import RouterConfig  # noqa: E402
from deployments.engines.base import ChatMessage  # noqa: E402
from deployments.router.artifact import EmbeddingSettings, LinearHead  # noqa: E402
from deployments.router.features import FEATURE_NAMES, extract_features  # noqa: E402
from deployments.router.learned import LearnedScorer  # noqa: E402
from deployments.router.router import Router  # noqa: E402
from deployments.router.routing_input import from_request  # noqa: E402
from pipelines.router_training import training  # noqa: E402
from pipelines.router_training.dataset import LabeledRow, load_rows  # noqa: E402
from pipelines.router_training.evaluation import evaluate, spearman  # noqa: E402
from pipelines.router_training.irt_training import TEMPLATE_SHARE  # noqa: E402
from pipelines.router_training.public_table import Exclusion  # noqa: E402

TEMPLATES = HERE / "data" / "prompts.jsonl"
FAMILY_BY_TIER = {0: "word_problem", 1: "word_problem", 2: "competition_math", 3: "competition_math"}


def field_value(record: dict, path: str):
    """A record's field by a dotted path; a number steps into a list (`instances.0.input`)."""
    value = record
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def tier_rows(mirror: Path, per_source: int, seed: int) -> tuple[dict[str, list[LabeledRow]], Counter]:
    """2 x `per_source` labelled rows per source (fewer where a source has fewer), and the counts of
    rows dropped as evaluation questions, duplicates or malformed, by source and reason."""
    spec = yaml.safe_load((HERE / "public_tiers.yaml").read_text())
    public = yaml.safe_load((HERE / "public_sources.yaml").read_text())
    exclusion = Exclusion(exclusion_questions(mirror, public["exclusions"]))
    dropped: Counter = Counter()
    out: dict[str, list[LabeledRow]] = {}
    for name, source in spec["sources"].items():
        texts: set[str] = set()
        for path in source["files"]:
            for line in git_file(mirror, source["repo"], source["commit"], path).decode().splitlines():
                try:
                    record = json.loads(line)
                    parts = (str(field_value(record, f)).strip() for f in source["text"])
                    text = source.get("joiner", " ").join(p for p in parts if p).strip()
                except (ValueError, KeyError, TypeError):
                    dropped[(name, "malformed")] += 1
                    continue
                if not text:
                    dropped[(name, "empty")] += 1
                elif text in texts:
                    dropped[(name, "duplicate")] += 1
                else:
                    texts.add(text)
        ordered = sorted(texts)
        random.Random(seed).shuffle(ordered)
        kept = []
        for text in ordered:
            if len(kept) == 2 * per_source:
                break
            match = exclusion.match(text)
            if match is not None:
                dropped[(name, f"evaluation set {match}")] += 1
                continue
            kept.append(text)
        level = int(source["tier"])
        out[name] = [
            LabeledRow(
                request=from_request([ChatMessage(role="user", content=text)], None),
                family=source.get("family", FAMILY_BY_TIER[level]),
                group=source.get("group", "maths"),
                level=level,
                size=SIZES[level],
                # A `probe_only` source is never trained on (its licence or its authors ask so).
                split="heldout" if source.get("probe_only") else "train",
            )
            for text in kept
        ]
    return out, dropped


def weighed_sources(
    train: dict[str, list[LabeledRow]], templates: Sequence[LabeledRow], share: float
) -> dict[str, list[LabeledRow]]:
    """The tier rows with pseudo-phrasings, so that training (which weighs each phrasing the same)
    gives the tier sources together `share` of the weight and each source the same part of it."""
    phrasings = len({r.phrasing for r in templates})
    per_source = max(1, round(share / (1 - share) * phrasings / len(train)))
    return {
        name: [dataclasses.replace(r, phrasing=f"tier:{name}:{i % per_source}") for i, r in enumerate(rows)]
        for name, rows in train.items()
    }


def write_training_rows(
    path: Path, train: dict[str, list[LabeledRow]], templates: Sequence[LabeledRow], share: float
) -> int:
    """Write the tier sources' training halves as labeled rows for `router train` (next to the
    templates' prompts.jsonl), weighed by `weighed_sources`; returns how many rows were written."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for name, rows in weighed_sources(train, templates, share).items():
            for i, row in enumerate(rows):
                record = {
                    "messages": [{"role": "user", "content": row.request.query}],
                    "family": row.family,
                    "group": row.group,
                    "level": row.level,
                    "size": row.size,
                    "phrasing": row.phrasing,
                    "split": "train",
                    "source": name,
                    "id": f"{name}-{i}",
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    return written


def feature_residual_head(alpha: float) -> Callable:
    """A level-head fit: the hand-set feature level plus a ridge fit of the residual on the features
    alone, then blended with the full ridge as the shipped recipe blends."""

    def fit(inputs: np.ndarray, levels: np.ndarray, weights: np.ndarray, prior) -> LinearHead:
        from sklearn.linear_model import Ridge

        dim = inputs.shape[1] - len(FEATURE_NAMES)
        residual = levels - (inputs @ prior[0] + prior[1])
        correction = Ridge(alpha=alpha).fit(inputs[:, dim:], residual, sample_weight=weights)
        p_coef = prior[0] + np.concatenate([np.zeros(dim), correction.coef_])
        p_intercept = prior[1] + correction.intercept_
        return SHIPPED_FIT(inputs, levels, weights, (p_coef, p_intercept))

    return fit


SHIPPED_FIT = training._fit_level_head


def residual_head(alpha: float) -> Callable:
    """A level-head fit: the hand-set feature level plus a ridge fit (penalty `alpha`) of the rows'
    residual from it on all the inputs (embedding and features), added whole: the ridge's own
    penalty, not a fixed blend, decides how far the rows move the hand-set level."""

    def fit(inputs: np.ndarray, levels: np.ndarray, weights: np.ndarray, prior) -> LinearHead:
        from sklearn.linear_model import Ridge

        residual = levels - (inputs @ prior[0] + prior[1])
        model = Ridge(alpha=alpha).fit(inputs, residual, sample_weight=weights)
        return training.level_softmax_head(prior[0] + model.coef_, prior[1] + model.intercept_)

    return fit


GATED_GROUP, GATED_ALPHA = "maths", 100.0


def level_estimate(artifact, inputs: np.ndarray) -> np.ndarray:
    """The level position e the shipped level head's softmax centres on ((2k e - k^2) / w^2)."""
    width2 = training.LEVEL_WIDTH**2
    return inputs @ (artifact.level.coef[1] * width2 / 2) + (artifact.level.intercept[1] * width2 + 1) / 2


class GroupGatedScorer(LearnedScorer):
    """The learned scorer plus a correction of its level estimate, linear in the standardized
    features, that counts in proportion to the family head's probability of one task group."""

    def __init__(self, artifact, embedder, group: str, coef: np.ndarray):
        super().__init__(artifact, embedder)
        self.group, self.coef = group, coef

    def score_many(self, requests, features=None):
        from deployments.router.artifact import difficulty_from_levels
        from deployments.router.learned import embedding_text, feature_matrix
        from deployments.router.score_result import ScoreResult

        if features is None:
            features = [extract_features(r) for r in requests]
        results = super().score_many(requests, features)
        if not results:
            return results
        embeddings = self.embedder.encode([embedding_text(r) for r in requests])
        inputs = self.artifact.inputs(embeddings, feature_matrix(features, self.artifact.feature_names))
        gate = np.asarray([r.groups.get(self.group, 0.0) for r in results])
        level = level_estimate(self.artifact, inputs) + gate * (inputs[:, embeddings.shape[1] :] @ self.coef)
        k = np.arange(len(results[0].levels))
        logits = (2 * np.outer(level, k) - k**2) / training.LEVEL_WIDTH**2
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        difficulties = difficulty_from_levels(probabilities)
        return [
            ScoreResult(
                difficulty=float(difficulty),
                features=r.features,
                levels=tuple(float(p) for p in row),
                groups=r.groups,
                family=r.family,
            )
            for r, row, difficulty in zip(results, probabilities, difficulties, strict=True)
        ]


def gated_scorer(fit_rows, embedder, settings: EmbeddingSettings) -> GroupGatedScorer:
    """The `tiers` fit plus the maths-gated correction fitted on the maths rows of `fit_rows`."""
    from sklearn.linear_model import Ridge

    from deployments.router.learned import embedding_text, feature_matrix

    artifact = training.fit_artifact(fit_rows, embedder, settings)
    rows = [r for r in fit_rows if r.group == GATED_GROUP]
    embeddings = embedder.encode([embedding_text(r.request) for r in rows])
    inputs = artifact.inputs(embeddings, feature_matrix([extract_features(r.request) for r in rows]))
    residual = np.asarray([training._level(r) for r in rows], dtype=float) - level_estimate(artifact, inputs)
    # No intercept: a constant shift of every maths-looking request cost the templates more (measured).
    fit = Ridge(alpha=GATED_ALPHA, fit_intercept=False).fit(
        inputs[:, embeddings.shape[1] :], residual, sample_weight=training._phrasing_weights(rows)
    )
    return GroupGatedScorer(artifact, embedder, GATED_GROUP, fit.coef_)


def shares(router: Router, rows: Sequence[LabeledRow], decisions: Sequence | None = None) -> str:
    """Size shares of `rows`' decisions (`router`'s, unless already made) and the tier figures, as
    one line."""
    if decisions is None:
        decisions = router.decide_many([r.request for r in rows])
    sizes = [d.size for d in decisions]
    counts = Counter(sizes)
    level = rows[0].level
    at_tier = sum(s == SIZES[level] for s in sizes) / len(sizes)
    within = sum(abs(SIZES.index(s) - level) <= 1 for s in sizes) / len(sizes)
    small = sum(s in SIZES[:2] for s in sizes) / len(sizes)
    large = 1 - small
    side = f"easy->0.8b/2b {small:.2f}" if level <= 1 else f"hard->4b/9b {large:.2f}"
    split = "/".join(f"{counts[s] / len(sizes):.2f}" for s in SIZES)
    return f"{split}  tier {at_tier:.2f}  within one {within:.2f}  {side}"


def overall(sources: Sequence[tuple[Sequence[LabeledRow], Sequence]]) -> str:
    """Over every held-out row, given each source's (rows, decisions): Spearman of the difficulty as
    served (`x-qwen-difficulty`, four decimals) with the tier, and the mean over sources of the share
    routed to the tier's size."""
    served, tiers, exact = [], [], []
    for rows, decisions in sources:
        served += [round(d.difficulty, 4) for d in decisions]
        tiers += [r.level for r in rows]
        exact.append(sum(d.size == r.size for d, r in zip(decisions, rows, strict=True)) / len(rows))
    return (
        f"all {len(served)} rows: Spearman(served difficulty, tier) {spearman(served, tiers):.3f}, "
        f"mean tier exact over sources {sum(exact) / len(exact):.3f}"
    )


def template_figures(rows, decisions) -> str:
    report = evaluate(rows, decisions, SIZES)
    return (
        f"exact {report.accuracy:.3f}  within one {report.within_one:.3f}  Spearman {report.spearman:.3f}  "
        f"9b->4b/9b {report.hard_to_large:.3f}  0.8b->0.8b {report.trivial_to_smallest:.3f}"
    )


def family_exact(rows, decisions) -> str:
    """Exact size per template family, for where a recipe gains or loses."""
    hits: dict[str, list[bool]] = {}
    for row, decision in zip(rows, decisions, strict=True):
        hits.setdefault(row.family, []).append(decision.size == row.size)
    return ", ".join(f"{family} {sum(h) / len(h):.2f}" for family, h in sorted(hits.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True, help="folder of owner+name/repo snapshots")
    parser.add_argument("--per-source", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipes", default="tiers,tiers-blend0.5,feature-residual,maths-gated")
    parser.add_argument(
        "--max-tokens", type=int, default=EmbeddingSettings.max_tokens, help="of the embedding"
    )
    parser.add_argument("--layers", type=int, default=EmbeddingSettings.layers, help="of the embedding")
    parser.add_argument(
        "--write-train",
        type=Path,
        default=None,
        help="also write the trainable sources' training halves here, as labeled rows for `router train`",
    )
    parser.add_argument(
        "--share",
        type=float,
        default=TEMPLATE_SHARE,
        help="weight the written rows hold against the templates' (default: the templates' share rule, 0.5)",
    )
    args = parser.parse_args(argv)
    settings = EmbeddingSettings(max_tokens=args.max_tokens, layers=args.layers)
    rows, dropped = tier_rows(args.mirror, args.per_source, args.seed)
    for (name, reason), count in sorted(dropped.items()):
        print(f"dropped {count} rows of {name}: {reason}")
    # All of a `probe_only` source is held out (tier_rows marks its rows so).
    probe_only = {name for name, r in rows.items() if r and r[0].heldout}
    held = {name: r if name in probe_only else r[len(r) // 2 :] for name, r in rows.items()}
    train = {name: r[: len(r) // 2] for name, r in rows.items() if name not in probe_only}
    print(", ".join(f"{name} {len(r)}" for name, r in held.items()), "held-out rows per source\n")
    templates = load_rows(TEMPLATES, require_label=True)
    fit_templates = [r for r in templates if not r.heldout]
    held_templates = [r for r in templates if r.heldout]
    if args.write_train is not None:
        count = write_training_rows(args.write_train, train, fit_templates, args.share)
        print(f"wrote {count} training rows to {args.write_train}\n")

    from cluster.config import load_config
    from deployments.router.embeddings import SentenceEmbedder

    shipped = Router(load_config(profile="demo").router, SIZES)
    print("shipped router (0.8b/2b/4b/9b shares):")
    decided = {name: shipped.decide_many([row.request for row in r]) for name, r in held.items()}
    for name, r in held.items():
        print(f"  {name:<14} tier {r[0].level}  {shares(shipped, r, decided[name])}")
    print(f"  {overall([(r, decided[name]) for name, r in held.items()])}")

    embedder = CachedEmbedder(SentenceEmbedder.for_settings(settings))
    config = RouterConfig()

    def plain_scorer(fit_rows, embedder, settings) -> LearnedScorer:
        return LearnedScorer(training.fit_artifact(fit_rows, embedder, settings), embedder)

    recipes = {
        "tiers": (SHIPPED_FIT, training.LEVEL_FEATURE_BLEND, plain_scorer),
        # The shipped recipe on the templates alone, in the same run: the baseline of the others.
        "templates": (SHIPPED_FIT, training.LEVEL_FEATURE_BLEND, plain_scorer),
        "tiers-blend0.5": (SHIPPED_FIT, 0.5, plain_scorer),
        "feature-residual": (feature_residual_head(1e4), training.LEVEL_FEATURE_BLEND, plain_scorer),
        "maths-gated": (SHIPPED_FIT, training.LEVEL_FEATURE_BLEND, gated_scorer),
    }
    shipped_blend = training.LEVEL_FEATURE_BLEND
    for recipe in filter(None, args.recipes.split(",")):
        if recipe.startswith("residual"):  # residual10: the residual ridge at alpha 10
            recipes[recipe] = (residual_head(float(recipe.removeprefix("residual"))), 0.0, plain_scorer)
        share = None
        if recipe.startswith("tiers-share"):  # tiers-share0.5: the tier rows hold half the weight
            share_text, _, blend_text = recipe.removeprefix("tiers-share").partition("-blend")
            share = float(share_text)  # tiers-share0.5-blend0.7: and the blend at 0.7
            blend = float(blend_text) if blend_text else training.LEVEL_FEATURE_BLEND
            recipes[recipe] = (SHIPPED_FIT, blend, plain_scorer)
        if recipe.startswith("tiers-blend"):  # any blend: tiers-blend0.3
            recipes[recipe] = (SHIPPED_FIT, float(recipe.removeprefix("tiers-blend")), plain_scorer)
        fit, blend, make_scorer = recipes[recipe]

        def router_for(fit_rows, make_scorer=make_scorer) -> Router:
            return Router(config, SIZES, scorer=make_scorer(fit_rows, embedder, settings))

        training._fit_level_head, training.LEVEL_FEATURE_BLEND = fit, blend
        try:
            tier_train = {} if recipe == "templates" else train
            if share is not None:
                tier_train = weighed_sources(train, fit_templates, share)
            public = [r for rs in tier_train.values() for r in rs]
            cv_rows, cv_decisions = [], []
            for fold in family_folds(fit_templates, 5, args.seed):
                test = [r for r in fit_templates if r.family in fold]
                router = router_for([r for r in fit_templates if r.family not in fold] + public)
                cv_rows += test
                cv_decisions += router.decide_many([r.request for r in test])
            full = router_for(fit_templates + public)
            print(f"\n{recipe}:")
            print(f"  templates, CV          {template_figures(cv_rows, cv_decisions)}")
            print(f"  {'':<22} {family_exact(cv_rows, cv_decisions)}")
            held_decisions = full.decide_many([r.request for r in held_templates])
            print(f"  templates, held out    {template_figures(held_templates, held_decisions)}")
            split_half, source_out = [], []
            for name, r in held.items():
                decisions = full.decide_many([x.request for x in r])
                split_half.append((r, decisions))
                if name in probe_only:
                    source_out.append((r, decisions))
                    print(f"  {name:<14} never trained on {shares(full, r, decisions)}")
                    continue
                alone = router_for(fit_templates + [x for n, xs in tier_train.items() if n != name for x in xs])
                source_out.append((r, alone.decide_many([x.request for x in r])))
                print(f"  {name:<14} split half {shares(full, r, split_half[-1][1])}")
                print(f"  {'':<14} source out {shares(alone, r, source_out[-1][1])}")
            print(f"  split half: {overall(split_half)}")
            print(f"  source out: {overall(source_out)}")
        finally:
            training._fit_level_head, training.LEVEL_FEATURE_BLEND = SHIPPED_FIT, shipped_blend
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
