"""Training the difficulty scorer from public graded answers (`qwen-cluster router train`).

1. A 2PL item-response model (irt.py) over every public model's answers gives each question a
   difficulty b and discrimination a.
2. Qwen3.5's sizes are placed on that scale from their model cards' MMLU-Pro figures
   (size_priors.json, group `knowledge`): the ability at which the MMLU-Pro questions of the table
   would be answered with the card's accuracy.
3. Ridge regressions learn b and log a from the request's sentence embedding and structural signals
   (signals.py), a logistic head its task group. The team-written templates
   (training/router/data/prompts.jsonl) join as one more source: their rubric level k is turned into
   the b in the middle of size k's band (where the policy picks size k), never into simulated
   correctness. The templates weigh half in total and the public sources share the other half
   equally, so the largest source does not teach its surface.

`leave_one_source_out` repeats 1-3 with each public source held out (its answers unseen by both the
item-response fit and the regressions) and scores the held-out source (loso.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cluster.catalog import SIZES
from deployments.router.artifact import EmbeddingSettings, LinearHead
from deployments.router.difficulty import (
    CUE_PREFIX,
    DISCRIMINATION_RANGE,
    DifficultyArtifact,
    LinearRegression,
)
from deployments.router.features import FEATURE_NAMES, extract_features
from deployments.router.learned import Embedder, embedding_text
from deployments.router.quality import DEFAULT_PRIORS, choose_size
from deployments.router.routing_input import RoutingInput, from_prompt
from deployments.router.signals import SIGNAL_NAMES, structural_signals
from pipelines.router_training.dataset import LabeledRow
from pipelines.router_training.irt import IrtFit, fit_irt, place_sizes
from pipelines.router_training.public_table import PublicRow

TEMPLATE_SOURCE = "templates"
# The source whose questions the model cards report on (MMLU-Pro), and the priors' group for it.
PLACEMENT_SOURCE = "mmlu_pro"
PLACEMENT_GROUP = "knowledge"
RIDGE_ALPHA = 10.0
GROUP_C = 1.0
TOLERANCE = 0.10
# The team's rubric and the public answers are two kinds of evidence with an equal say: the templates
# are the only rows of the short, everyday asks the router mostly sees (greetings, look-ups), which no
# public source holds. Set by that rule, not tuned (figures for other shares: training/router/README.md).
TEMPLATE_SHARE = 0.5


@dataclass
class Corpus:
    """Everything the regressions train on, aligned by row.

    Attributes:
        ids: row ids (public rows: the item id of the IRT fit).
        sources: each row's source (public source name or `templates`).
        groups: each row's task group.
        embeddings: sentence embeddings, one row per request.
        signals: all structural signals and cue features, columns `signal_names`.
        signal_names: SIGNAL_NAMES then `cue:<feature>` for every cue feature.
        levels: the rubric level of template rows (-1 for public rows).
        correct: per-model correctness of public rows (empty for templates).
    """

    ids: list[str]
    sources: np.ndarray
    groups: np.ndarray
    embeddings: np.ndarray
    signals: np.ndarray
    signal_names: tuple[str, ...]
    levels: np.ndarray
    correct: list[dict[str, int]]

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The signal columns `names`, in that order."""
        index = [self.signal_names.index(n) for n in names]
        return self.signals[:, index]


def public_request(row: PublicRow) -> RoutingInput:
    """A public question as a request (a tool-use row offers tools)."""
    return from_prompt(row.prompt, ("tools",) if row.tools else ())


def all_signals(request: RoutingInput) -> dict[str, float]:
    """Structural signals and every cue feature (prefixed), for training and ablation."""
    values = structural_signals(request)
    values.update({CUE_PREFIX + k: v for k, v in extract_features(request).items()})
    return values


def build_corpus(
    public: Sequence[PublicRow],
    templates: Sequence[LabeledRow],
    embedder: Embedder,
    settings: EmbeddingSettings,
    cache: Path | None = None,
) -> Corpus:
    """Embed and extract signals of every public row and every template row (template rows keep
    their split in `sources`: `templates` for training rows, `templates:heldout...` otherwise)."""
    requests = [public_request(r) for r in public] + [r.request for r in templates]
    names = SIGNAL_NAMES + tuple(CUE_PREFIX + n for n in FEATURE_NAMES)
    signals = cached_signals(requests, names, cache)
    texts = [embedding_text(r) for r in requests]
    return Corpus(
        ids=[r.id for r in public] + [r.id or f"template:{r.line}" for r in templates],
        sources=np.asarray(
            [r.source for r in public]
            + [TEMPLATE_SOURCE if not r.heldout else f"{TEMPLATE_SOURCE}:{r.split}" for r in templates]
        ),
        groups=np.asarray([r.group for r in public] + [r.group or "knowledge" for r in templates]),
        embeddings=cached_embeddings(embedder, settings, texts, cache),
        signals=signals.reshape(len(requests), len(names)),
        signal_names=names,
        levels=np.asarray([-1] * len(public) + [_level(r) for r in templates]),
        correct=[r.correct for r in public] + [{} for _ in templates],
    )


def _level(row: LabeledRow) -> int:
    if row.level is not None:
        return row.level
    return SIZES.index(row.size) if row.size is not None else -1


def cached_signals(requests: Sequence[RoutingInput], names: Sequence[str], cache: Path | None) -> np.ndarray:
    """`all_signals` of every request as a matrix (columns `names`), cached like the embeddings."""
    shape = [[r.query, r.context, r.user_turns, r.images, list(r.structure)] for r in requests]
    key = hashlib.sha256(json.dumps([list(names), shape]).encode()).hexdigest()[:20]
    path = cache / f"signals-{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    signals = np.asarray([[v[n] for n in names] for v in map(all_signals, requests)], dtype=np.float32)
    signals = signals.reshape(len(requests), len(names))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, signals)
    return signals


def cached_embeddings(
    embedder: Embedder, settings: EmbeddingSettings, texts: Sequence[str], cache: Path | None
) -> np.ndarray:
    """Embeddings of `texts`, read from `cache` when an earlier run stored the same texts and settings."""
    key = hashlib.sha256(json.dumps([settings.__dict__, list(texts)], sort_keys=True).encode()).hexdigest()[:20]
    path = cache / f"embeddings-{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    embeddings = embedder.encode(list(texts), batch_size=64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, embeddings)
    return embeddings


def fit_answers(corpus: Corpus, rows: np.ndarray, cache: Path | None = None) -> IrtFit:
    """The item-response fit over the public answers of `rows` (indices into the corpus), read from
    `cache` when an earlier run fitted the same answers."""
    answers = [(corpus.ids[k], m, c) for k in rows for m, c in corpus.correct[k].items()]
    key = hashlib.sha256(json.dumps(answers).encode()).hexdigest()[:20]
    path = cache / f"irt-{key}.npz" if cache is not None else None
    if path is not None and path.is_file():
        saved = np.load(path)
        return IrtFit(
            tuple(saved["items"].tolist()),
            tuple(saved["models"].tolist()),
            saved["difficulty"],
            saved["discrimination"],
            saved["ability"],
        )
    fit = fit_irt(answers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            items=np.asarray(fit.items),
            models=np.asarray(fit.models),
            difficulty=fit.difficulty,
            discrimination=fit.discrimination,
            ability=fit.ability,
        )
    return fit


def card_accuracies(priors: Path = DEFAULT_PRIORS) -> dict[str, float]:
    """Qwen3.5's published accuracy per size on the placement benchmark (size_priors.json)."""
    document = json.loads(Path(priors).read_text())
    return {s: float(document["groups"][PLACEMENT_GROUP][s]) for s in SIZES}


def size_abilities(fit: IrtFit, corpus: Corpus, reference: tuple[IrtFit, dict[str, float]] | None = None) -> dict[str, float]:
    """Qwen3.5's abilities on `fit`'s scale: from the card figures over the placement source's items
    when the fit has them; else carried over from a `reference` fit (and its abilities) by the
    least-squares line between the two fits' abilities of the models they share."""
    position = {item: k for k, item in enumerate(fit.items)}
    placement = np.asarray(
        [position[corpus.ids[k]] for k in np.flatnonzero(corpus.sources == PLACEMENT_SOURCE) if corpus.ids[k] in position]
    )
    if placement.size:
        return place_sizes(fit, placement, card_accuracies())
    if reference is None:
        raise ValueError(f"no {PLACEMENT_SOURCE} items in the fit and no reference fit to carry abilities over from")
    ref_fit, ref_abilities = reference
    here, there = fit.abilities(), ref_fit.abilities()
    shared = sorted(set(here) & set(there))
    if len(shared) < 2:
        raise ValueError("fewer than two models shared with the reference fit")
    slope, intercept = np.polyfit([there[m] for m in shared], [here[m] for m in shared], 1)
    return {s: float(slope * t + intercept) for s, t in ref_abilities.items()}


def level_cuts(abilities: Mapping[str, float], discrimination: float, tolerance: float = TOLERANCE) -> tuple[float, ...]:
    """The b values where the policy's choice first moves from size k to a larger one, for an item of
    discrimination `discrimination` (scanning b upwards from easy)."""
    theta = np.asarray([abilities[s] for s in SIZES])
    cuts: list[float] = []
    grid = np.linspace(-8.0, 8.0, 3201)
    for b in grid:
        p = 1 / (1 + np.exp(-discrimination * (theta - b)))
        chosen = SIZES.index(choose_size(dict(zip(SIZES, p, strict=True)), SIZES, tolerance))
        while len(cuts) < chosen:
            cuts.append(float(b))
        if len(cuts) == len(SIZES) - 1:
            break
    while len(cuts) < len(SIZES) - 1:
        cuts.append(float(grid[-1]))
    return tuple(cuts)


def level_targets(cuts: Sequence[float]) -> np.ndarray:
    """The b a template of level k stands for: the middle of size k's band (outer bands as wide as
    their inner neighbour)."""
    c = list(cuts)
    return np.asarray([c[0] - (c[1] - c[0]) / 2, (c[0] + c[1]) / 2, (c[1] + c[2]) / 2, c[2] + (c[2] - c[1]) / 2])


def source_weights(sources: np.ndarray, template_share: float = TEMPLATE_SHARE) -> np.ndarray:
    """Rows of one source weigh the same as each other; the template rows together weigh
    `template_share` of the total, and the public sources share the rest equally."""
    names, counts = np.unique(sources, return_counts=True)
    public = [n for n in names if n != TEMPLATE_SOURCE]
    has_templates = len(public) < len(names)
    share = {n: (1.0 - template_share) / max(len(public), 1) if has_templates else 1.0 / len(names) for n in public}
    if has_templates:
        share[TEMPLATE_SOURCE] = template_share if public else 1.0
    per = {n: share[n] / c for n, c in zip(names, counts, strict=True)}
    weights = np.asarray([per[s] for s in sources])
    return weights / weights.mean()


@dataclass
class Heads:
    """The fitted regressions, group head and input standardisation."""

    input_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    difficulty: LinearRegression
    discrimination: LinearRegression
    groups: LinearHead

    def inputs(self, corpus: Corpus, rows: np.ndarray) -> np.ndarray:
        """Input rows for corpus rows `rows`."""
        signals = corpus.columns(self.input_names)[rows]
        return np.hstack([corpus.embeddings[rows], (signals - self.mean) / self.scale])

    def predict_b(self, corpus: Corpus, rows: np.ndarray) -> np.ndarray:
        """Predicted difficulty of corpus rows `rows`."""
        return self.difficulty.predict(self.inputs(corpus, rows))

    def predict(self, corpus: Corpus, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (b, a) of corpus rows `rows` (a kept in the runtime's range)."""
        inputs = self.inputs(corpus, rows)
        a = np.clip(np.exp(self.discrimination.predict(inputs)), *DISCRIMINATION_RANGE)
        return self.difficulty.predict(inputs), a


def fit_heads(
    corpus: Corpus,
    rows: np.ndarray,
    b: np.ndarray,
    log_a: np.ndarray,
    input_names: Sequence[str],
    alpha: float = RIDGE_ALPHA,
    with_groups: bool = True,
) -> Heads:
    """Fit the regressions on corpus rows `rows` with targets b (every row) and log a (NaN where
    unknown: template rows), and the group head (without `with_groups`, a head that always names
    the commonest group: ablations that only read b skip its cost)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    names = tuple(input_names)
    signals = corpus.columns(names)[rows]
    mean = signals.mean(axis=0)
    scale = signals.std(axis=0)
    scale[scale < 1e-6] = 1.0
    inputs = np.hstack([corpus.embeddings[rows], (signals - mean) / scale])
    weights = source_weights(corpus.sources[rows])
    difficulty = Ridge(alpha=alpha).fit(inputs, b, sample_weight=weights)
    known = ~np.isnan(log_a)
    discrimination = Ridge(alpha=alpha).fit(inputs[known], log_a[known], sample_weight=weights[known])
    labels = corpus.groups[rows]
    if len(set(labels.tolist())) == 1 or not with_groups:  # a head that always names one group
        values, counts = np.unique(labels, return_counts=True)
        classes = (str(values[counts.argmax()]),)
        coef, intercept = np.zeros((1, inputs.shape[1])), np.zeros(1)
    else:
        groups = LogisticRegression(C=GROUP_C, max_iter=300).fit(inputs, labels, sample_weight=weights)
        classes = tuple(str(c) for c in groups.classes_)
        coef, intercept = groups.coef_, groups.intercept_
        if len(classes) == 2:  # scikit-learn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]) / 2, np.asarray([-intercept[0], intercept[0]]) / 2
    return Heads(
        input_names=names,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        difficulty=LinearRegression(difficulty.coef_.astype(np.float32), float(difficulty.intercept_)),
        discrimination=LinearRegression(discrimination.coef_.astype(np.float32), float(discrimination.intercept_)),
        groups=LinearHead(classes, coef.astype(np.float32), intercept.astype(np.float32)),
    )


@dataclass
class FoldFit:
    """One training run: the item-response fit, Qwen3.5's abilities, the cuts and the heads."""

    irt: IrtFit
    abilities: dict[str, float]
    cuts: tuple[float, ...]
    heads: Heads


def train_fold(
    corpus: Corpus,
    public_rows: np.ndarray,
    template_rows: np.ndarray,
    input_names: Sequence[str],
    reference: tuple[IrtFit, dict[str, float]] | None = None,
    alpha: float = RIDGE_ALPHA,
    cache: Path | None = None,
    with_groups: bool = True,
) -> FoldFit:
    """Fit everything on public rows `public_rows` and template rows `template_rows`."""
    irt = fit_answers(corpus, public_rows, cache)
    abilities = size_abilities(irt, corpus, reference)
    cuts = level_cuts(abilities, float(np.median(irt.discrimination)))
    position = {item: k for k, item in enumerate(irt.items)}
    item = np.asarray([position[corpus.ids[k]] for k in public_rows])
    b = np.concatenate([irt.difficulty[item], level_targets(cuts)[corpus.levels[template_rows]]])
    log_a = np.concatenate([np.log(irt.discrimination[item]), np.full(len(template_rows), np.nan)])
    rows = np.concatenate([public_rows, template_rows])
    return FoldFit(irt, abilities, cuts, fit_heads(corpus, rows, b, log_a, input_names, alpha, with_groups))


def to_artifact(fold: FoldFit, residual_sd: float, settings: EmbeddingSettings, training: dict) -> DifficultyArtifact:
    """The runtime artifact of a training run."""
    heads = fold.heads
    return DifficultyArtifact(
        input_names=heads.input_names,
        input_mean=heads.mean,
        input_scale=heads.scale,
        difficulty=heads.difficulty,
        discrimination=heads.discrimination,
        residual_sd=residual_sd,
        groups=heads.groups,
        abilities=fold.abilities,
        level_cuts=fold.cuts,
        embedding=settings,
        training=training,
    )
