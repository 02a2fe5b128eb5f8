"""`qwen-cluster router train` (without LABELED.jsonl): the difficulty scorer from public answers.

Fits everything on every public source and the template rows (irt_training.py), runs the
leave-one-source-out evaluation (loso.py), writes the report, and writes the artifact only when the
held-out goals are met, or to an `out` path other than the shipped one: a run that misses its goals
never replaces the shipped artifact, and says so with a non-zero exit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deployments.router.artifact import EmbeddingSettings
from deployments.router.difficulty import DEFAULT_DIFFICULTY_ARTIFACT, DifficultyArtifact
from deployments.router.learned import Embedder
from deployments.router.signals import SIGNAL_NAMES
from pipelines.router_training.dataset import load_rows
from pipelines.router_training.irt_training import (
    RIDGE_ALPHA,
    TEMPLATE_SOURCE,
    Corpus,
    build_corpus,
    to_artifact,
    train_fold,
)
from pipelines.router_training.loso import LosoReport, leave_one_source_out
from pipelines.router_training.public_table import load_models, load_table

DATA = Path(__file__).resolve().parents[2] / "training" / "router" / "data"
DEFAULT_PUBLIC = DATA / "public.jsonl.gz"
DEFAULT_MODELS = DATA / "public_models.json"
DEFAULT_TEMPLATES = DATA / "prompts.jsonl"
# The inputs appended to the embedding: the structural signals. Cue features join only where the
# ablation (training/router/README.md) shows they earn their place.
DEFAULT_INPUTS: tuple[str, ...] = SIGNAL_NAMES


@dataclass
class DifficultyRun:
    """What a training run produced."""

    report: LosoReport
    artifact: DifficultyArtifact
    written: Path | None
    lines: list[str]


def load_corpus(
    public: Path,
    templates: Path | None,
    embedder: Embedder | None,
    settings: EmbeddingSettings,
    cache: Path | None,
) -> Corpus:
    """Read the public table and the templates and embed them."""
    rows = load_table(public)
    template_rows = load_rows(templates, require_label=True) if templates is not None else []
    if embedder is None:
        from deployments.router.embeddings import SentenceEmbedder

        embedder = SentenceEmbedder.for_settings(settings)
    return build_corpus(rows, template_rows, embedder, settings, cache)


def evaluate_sources(
    corpus: Corpus,
    models_path: Path,
    inputs: Sequence[str],
    alpha: float,
    cache: Path | None,
    with_groups: bool = True,
) -> tuple[LosoReport, object]:
    """The full fit and the leave-one-source-out report (`with_groups` False skips the group head,
    which the figures do not read)."""
    is_public = np.asarray([not s.startswith(TEMPLATE_SOURCE) for s in corpus.sources])
    templates = np.flatnonzero(corpus.sources == TEMPLATE_SOURCE)
    full = train_fold(
        corpus, np.flatnonzero(is_public), templates, inputs, alpha=alpha, cache=cache, with_groups=with_groups
    )
    report, _ = leave_one_source_out(
        corpus, full, load_models(models_path), inputs, alpha, cache, with_groups=False
    )
    return report, full


def train_difficulty(
    public: Path = DEFAULT_PUBLIC,
    models: Path = DEFAULT_MODELS,
    templates: Path | None = DEFAULT_TEMPLATES,
    out: Path | None = None,
    *,
    embedder: Embedder | None = None,
    settings: EmbeddingSettings | None = None,
    inputs: Sequence[str] = DEFAULT_INPUTS,
    alpha: float = RIDGE_ALPHA,
    cache: Path | None = None,
    report_path: Path | None = None,
) -> DifficultyRun:
    """Train, evaluate leave-one-source-out, and write the artifact if allowed (module docstring).

    Raises:
        FileNotFoundError: when an input file is missing.
        ValueError: for a malformed table or template row (naming file and line).
    """
    settings = settings or EmbeddingSettings()
    corpus = load_corpus(public, templates, embedder, settings, cache)
    report, full = evaluate_sources(corpus, models, inputs, alpha, cache)
    sds = [s.residual_sd for s in report.sources]
    residual_sd = float(np.mean(sds)) if sds else 1.0
    sources = [p for p in (public, models, templates) if p is not None]
    training = {
        "data": [p.name for p in sources],
        "data_sha256": hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest(),
        "trained_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": f"2PL IRT over {len(full.irt.models)} public models; ridge (alpha {alpha}) to b and log a "
        "from the embedding and structural signals; logistic task-group head; templates weigh half, "
        "public sources share the other half",
        "abilities_from": "Qwen3.5 model cards' MMLU-Pro figures (size_priors.json, group knowledge) "
        "placed over the table's MMLU-Pro questions",
        "loso": {
            s.source: {"rows": s.rows, "apgr": s.apgr, "spearman": s.spearman, "pairs": s.pairs}
            for s in report.sources
        },
        "loso_mean_apgr": report.mean_apgr,
        "goals_met": report.goals_met(),
        "tiers": report.tiers,
    }
    artifact = to_artifact(full, residual_sd, settings, training)
    target = Path(out) if out is not None else DEFAULT_DIFFICULTY_ARTIFACT
    shipped = target.resolve() == DEFAULT_DIFFICULTY_ARTIFACT.resolve()
    written = None
    lines = report.lines()
    if report.goals_met() or not shipped:
        written = artifact.save(target)
        lines.append(f"artifact written to {written}")
    else:
        lines.append(f"held-out goals not met: the shipped artifact {target} is left as it was")
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text("\n".join(lines) + "\n")
    return DifficultyRun(report, artifact, written, lines)
