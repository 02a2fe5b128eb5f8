"""The item-response difficulty scorer: structural signals, the artifact, the scorer's estimates and
levels, and its training and leave-one-source-out evaluation on a small synthetic table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cluster.catalog import SIZES
from cluster.router_config import RouterConfig
from deployments.engines.base import ChatMessage
from deployments.router.artifact import ArtifactMismatchError, EmbeddingSettings, LinearHead
from deployments.router.difficulty import (
    DEFAULT_DIFFICULTY_ARTIFACT,
    DifficultyArtifact,
    DifficultyScorer,
    LinearRegression,
    is_difficulty_artifact,
)
from deployments.router.router import Router
from deployments.router.routing_input import RoutingInput, from_messages, from_prompt
from deployments.router.signals import SIGNAL_NAMES, structural_signals
from pipelines.router_training.difficulty_training import train_difficulty
from pipelines.router_training.irt_training import level_cuts, level_targets, source_weights
from pipelines.router_training.loso import pair_gap
from pipelines.router_training.public_table import PublicRow, save_table
from tests.support.embedders import HashingEmbedder

pytestmark = pytest.mark.unit


def tiny_artifact(names=SIGNAL_NAMES, dim=32) -> DifficultyArtifact:
    width = dim + len(names)
    coef = np.zeros(width, dtype=np.float32)
    coef[dim + names.index("length")] = 2.0  # longer is harder
    return DifficultyArtifact(
        input_names=tuple(names),
        input_mean=np.zeros(len(names), dtype=np.float32),
        input_scale=np.ones(len(names), dtype=np.float32),
        difficulty=LinearRegression(coef, -4.0),
        discrimination=LinearRegression(np.zeros(width, dtype=np.float32), 0.0),
        residual_sd=0.5,
        groups=LinearHead(("coding", "knowledge"), np.zeros((2, width)), np.array([0.0, 0.1])),
        abilities={"0.8b": -1.0, "2b": 0.0, "4b": 1.0, "9b": 1.7},
        level_cuts=(-2.0, -1.0, 0.5),
        embedding=EmbeddingSettings(max_tokens=32, int8=False),
        training={"note": "test"},
    )


def test_structural_signals_read_shape_not_words():
    plain = structural_signals(from_prompt("What is the capital of France?"))
    assert set(plain) == set(SIGNAL_NAMES) and plain["code"] == 0 and plain["tools"] == 0
    code = structural_signals(from_prompt("Fix this:\n```python\nprint(1)\n```", ("tools", "structured")))
    assert code["code"] == 1.0 and code["tools"] == 1.0 and code["structured"] == 1.0
    chat = from_messages([ChatMessage(role="user", content="hi")] * 3)
    assert structural_signals(chat)["turns"] == 0.5
    assert structural_signals(RoutingInput(query="x", images=4))["images"] == 1.0


def test_artifact_round_trips_and_is_recognised(tmp_path):
    artifact = tiny_artifact()
    path = artifact.save(tmp_path / "d.json")
    assert is_difficulty_artifact(path)
    again = DifficultyArtifact.load(path)
    assert again.to_json() == artifact.to_json()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    assert not is_difficulty_artifact(other)
    with pytest.raises(ValueError, match="not a difficulty artifact"):
        DifficultyArtifact.load(other)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"schema_version": 99}, "schema version"), ({"embedding": {"model": "other"}}, "embedding model")],
)
def test_artifact_of_another_schema_or_embedding_is_refused(tmp_path, change, message):
    document = {**tiny_artifact().to_json(), **change}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactMismatchError, match=message):
        DifficultyArtifact.load(path)


def test_artifact_checks_its_shapes():
    with pytest.raises(ValueError, match="neither structural signals nor cue features"):
        tiny_artifact(names=("length", "nonsense"))
    document = tiny_artifact().to_json()
    document["level_cuts"] = [1.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="increasing"):
        DifficultyArtifact.from_json(document)


def test_scorer_gives_estimates_levels_and_a_difficulty_that_rise_with_b():
    scorer = DifficultyScorer(tiny_artifact(), HashingEmbedder(dim=32))
    short, long = scorer.score_many([from_prompt("hi"), from_prompt("word " * 3000)])
    for result in (short, long):
        assert set(result.estimates) == set(SIZES)
        assert list(result.estimates.values()) == sorted(result.estimates.values())  # bigger is better
        assert sum(result.levels) == pytest.approx(1.0)
        assert result.family == "knowledge" and 0.0 <= result.difficulty <= 1.0
    assert long.features["irt_b"] > short.features["irt_b"]
    assert long.difficulty > short.difficulty
    assert long.estimates["0.8b"] < short.estimates["0.8b"]


def test_router_routes_by_the_scorers_estimates():
    config = RouterConfig(enabled=True, scorer="learned", quality_tolerance=0.1)
    router = Router(config, ("0.8b", "4b"), scorer=DifficultyScorer(tiny_artifact(), HashingEmbedder(dim=32)))
    easy = router.route(prompt="hi")
    assert easy.size == "0.8b" and set(easy.estimates) == {"0.8b", "4b"}
    hard = router.route(prompt="word " * 3000)
    assert hard.size == "4b" and hard.reason.startswith("quality")


def test_level_cuts_and_targets_follow_the_policy():
    abilities = {"0.8b": -1.0, "2b": 0.0, "4b": 1.0, "9b": 1.7}
    cuts = level_cuts(abilities, 1.0)
    assert list(cuts) == sorted(cuts) and len(cuts) == 3
    targets = level_targets(cuts)
    assert targets[0] < cuts[0] < targets[1] < cuts[1] < targets[2] < cuts[2] < targets[3]


def test_source_weights_give_each_source_the_same_total_and_templates_half():
    weights = source_weights(np.asarray(["a", "a", "a", "b"]))
    assert weights[:3].sum() == pytest.approx(weights[3])
    weights = source_weights(np.asarray(["a", "a", "b", "templates", "templates"]))
    assert weights[:2].sum() == pytest.approx(weights[2])
    assert weights[3:].sum() == pytest.approx(weights[:3].sum())


def test_pair_gap_peaks_between_the_two_models():
    b = np.linspace(-4, 4, 81)
    gap = pair_gap(b, np.ones_like(b), 0.3, 0.6)
    assert (gap > 0).all()
    assert 0 < int(gap.argmax()) < len(b) - 1


def synthetic_table(tmp_path):
    """Three sources; hard questions are long, and the larger model of each ladder answers more."""
    rng = np.random.default_rng(0)
    models = {"s-1b": ("s", 1), "s-9b": ("s", 9), "t-2b": ("t", 2), "t-8b": ("t", 8)}
    theta = {"s-1b": -1.0, "s-9b": 1.0, "t-2b": -0.5, "t-8b": 0.8}
    rows = []
    for source in ("alpha", "beta", "gamma"):
        for k in range(60):
            b = rng.normal()
            words = " ".join(["step"] * int(5 + 60 * (b + 3)))
            correct = {m: int(rng.random() < 1 / (1 + np.exp(-2 * (t - b)))) for m, t in theta.items()}
            prompt = f"question {k} of {source}: {words}"
            rows.append(PublicRow(f"{source}:{k}", source, "knowledge", prompt, correct))
    # The abilities are placed from the MMLU-Pro source: the synthetic `alpha` plays that part.
    rows = [PublicRow(r.id, "mmlu_pro" if r.source == "alpha" else r.source, r.group, r.prompt, r.correct) for r in rows]
    table = save_table(rows, tmp_path / "public.jsonl.gz")
    models_path = tmp_path / "models.json"
    models_path.write_text(json.dumps({m: {"family": f, "size": s} for m, (f, s) in models.items()}))
    return table, models_path


def test_training_reports_every_source_and_never_replaces_the_shipped_artifact(tmp_path):
    table, models = synthetic_table(tmp_path)
    before = DEFAULT_DIFFICULTY_ARTIFACT.read_bytes() if DEFAULT_DIFFICULTY_ARTIFACT.exists() else None
    out = tmp_path / "artifact.json"
    run = train_difficulty(
        table, models, None, out, embedder=HashingEmbedder(dim=32), settings=EmbeddingSettings(int8=False),
        report_path=tmp_path / "report.txt",
    )
    assert {s.source for s in run.report.sources} == {"mmlu_pro", "beta", "gamma"}
    for figures in run.report.sources:
        assert figures.pairs and figures.spearman is not None
    # Length carries the difficulty here, so held-out sources rank well.
    assert min(s.spearman for s in run.report.sources) > 0.5
    assert run.written == out and DifficultyArtifact.load(out).abilities["9b"] > DifficultyArtifact.load(out).abilities["0.8b"]
    assert "leave-one-source-out" in (tmp_path / "report.txt").read_text()
    after = DEFAULT_DIFFICULTY_ARTIFACT.read_bytes() if DEFAULT_DIFFICULTY_ARTIFACT.exists() else None
    assert before == after


def run_cli(argv: list[str]) -> int:
    import argparse

    from pipelines.router_training import cli

    parser = argparse.ArgumentParser(prog="qwen-cluster")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["router", *argv])
    return args.handler(args)


def test_cli_train_and_eval_loso_on_a_public_table(tmp_path, capsys):
    table, models = synthetic_table(tmp_path)
    common = ["--public", str(table), "--models", str(models), "--templates", str(tmp_path / "none.jsonl")]
    # A missing input fails with a message, never a traceback.
    assert run_cli(["train", *common, "--out", str(tmp_path / "a.json")]) == 1
    assert "none.jsonl" in capsys.readouterr().err
    templates = tmp_path / "templates.jsonl"
    templates.write_text(
        "".join(
            json.dumps({"prompt": p, "size": s, "level": lv, "family": "f", "group": "knowledge", "split": split})
            + "\n"
            for p, s, lv in [("hello", "0.8b", 0), ("prove the theorem " * 20, "9b", 3)]
            for split in ("train", "train", "heldout_family")
        )
    )
    common[-1] = str(templates)
    out = tmp_path / "artifact.json"
    status = run_cli(["train", *common, "--out", str(out), "--cache", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert "leave-one-source-out" in printed and f"artifact written to {out}" in printed
    assert status == (0 if "goals: met" in printed else 1)
    assert DifficultyArtifact.load(out).training["loso"].keys() == {"mmlu_pro", "beta", "gamma"}
    assert run_cli(["eval", "--loso", *common, "--cache", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert all(source in printed for source in ("mmlu_pro", "beta", "gamma")) and "template tier figures" in printed
    assert run_cli(["eval"]) == 1
    assert "give LABELED.jsonl, --loso, or both" in capsys.readouterr().err
