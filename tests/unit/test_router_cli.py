"""The `router train|calibrate|eval` handlers, called directly through the registered parser."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from cluster.router_config import RouterConfig
from deployments.router import cli
from deployments.router.artifact import LearnedArtifact

pytestmark = pytest.mark.unit

SEED_SET = Path(__file__).resolve().parents[2] / "deployments" / "router" / "data" / "seed.jsonl"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="qwen-cluster")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["router", *argv])
    return args.handler(args)


def small_labeled(tmp_path: Path, per_size: int = 6) -> Path:
    rows = [json.loads(line) for line in SEED_SET.read_text().splitlines()]
    chosen = []
    for size in ("0.8b", "2b", "4b", "9b"):
        chosen += [r for r in rows if r["size"] == size][:per_size]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n" for r in chosen))
    return path


def test_register_adds_the_three_subcommands():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    for argv in (
        ["router", "train", "x.jsonl"],
        ["router", "calibrate", "--shares", "1,0,0,0", "x.jsonl"],
        ["router", "eval", "x.jsonl"],
    ):
        assert callable(parser.parse_args(argv).handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["router", "calibrate", "x.jsonl"])  # --shares is required


def test_calibrate_prints_thresholds_shares_and_a_pasteable_block(capsys):
    assert run(["calibrate", "--shares", "0.4,0.3,0.2,0.1", str(SEED_SET), "--scorer", "features"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"thresholds: t1=[\d.]+, t2=[\d.]+, t3=[\d.]+", out)
    for size, target in (("0.8b", "40.0%"), ("9b", "10.0%")):
        assert re.search(rf"{re.escape(size)}\s+{re.escape(target)}\s+\d+\.\d%", out)
    block = yaml.safe_load(out.split("Paste into the cluster config:")[1])
    config = RouterConfig(**block["router"])
    assert config.scorer == "features"
    assert list(config.thresholds) == sorted(config.thresholds)


def test_calibrate_with_a_profile_notes_unserved_sizes(capsys):
    assert (
        run(
            [
                "calibrate",
                "--shares",
                "0.6,0.4,0,0",
                str(SEED_SET),
                "--profile",
                "cpu",
                "--scorer",
                "features",
            ]
        )
        == 0
    )
    assert "only 0.8b, 2b are served" in capsys.readouterr().out


def test_calibrate_rejects_bad_shares(capsys):
    assert run(["calibrate", "--shares", "0.5,0.5", str(SEED_SET)]) == cli.USAGE_ERROR
    assert "one share per size" in capsys.readouterr().err


def test_eval_prints_distribution_accuracy_confusion_and_cost(capsys):
    assert run(["eval", str(SEED_SET), "--split", "heldout", "--scorer", "features"]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy vs labels: ([\d.]+) on (\d+) rows", out).group(1))
    assert 0.4 < accuracy <= 1.0
    assert "confusion" in out and "relative cost (by parameter count) vs always 9b" in out
    assert "APGR" not in out  # the seed set has labels, not per-size correctness


def test_eval_with_correctness_prints_quality_and_apgr(tmp_path, capsys):
    rows = [
        {"prompt": "hi there", "correct": {"0.8b": 1, "2b": 1, "4b": 1, "9b": 1}},
        {
            "prompt": "Summarize: the council closed the bridge for repairs until autumn.",
            "correct": {"0.8b": 0, "2b": 1, "4b": 1, "9b": 1},
        },
        {
            "prompt": "Prove rigorously that sqrt(2) is irrational.",
            "correct": {"0.8b": 0, "2b": 0, "4b": 0, "9b": 1},
        },
        {
            "prompt": "Find all positive integers n such that n^2+1 divides n^3+5.",
            "correct": {"0.8b": 0, "2b": 0, "4b": 1, "9b": 1},
        },
    ]
    path = tmp_path / "correct.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(["eval", str(path), "--scorer", "features"]) == 0
    out = capsys.readouterr().out
    assert "quality on 4 rows" in out and "APGR (RouteLLM" in out and "quality vs always 9b" in out


def test_eval_reports_missing_labels(tmp_path, capsys):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    assert run(["eval", str(path)]) == cli.USAGE_ERROR
    assert "needs `size` or `correct`" in capsys.readouterr().err


def test_eval_threshold_override_is_validated(capsys):
    assert run(["eval", str(SEED_SET), "--thresholds", "0.8,0.5,0.2"]) == cli.USAGE_ERROR
    assert "non-decreasing" in capsys.readouterr().err


def test_train_writes_an_artifact_and_reports_held_out_accuracy(tmp_path, capsys):
    out_path = tmp_path / "artifact.json"
    assert (
        run(
            [
                "train",
                str(small_labeled(tmp_path)),
                "--out",
                str(out_path),
                "--holdout-fraction",
                "0.25",
                "--max-tokens",
                "32",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "held-out rows: 8 (stratified random 25%" in out
    assert re.search(r"learned scorer accuracy: train [\d.]+, held-out [\d.]+", out)
    artifact = LearnedArtifact.load(out_path)
    assert artifact.embedding.max_tokens == 32 and artifact.embedding.int8
    assert artifact.training["heldout_rows"] == 8


def test_train_rejects_a_file_without_labels(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    assert run(["train", str(path), "--out", str(tmp_path / "a.json")]) == cli.USAGE_ERROR
    assert "needs `size` or `correct`" in capsys.readouterr().err
