"""The `router train|calibrate|eval` handlers, called directly through the registered parser."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from cluster.router_config import RouterConfig
from deployments.router.artifact import LearnedArtifact
from pipelines.router_training import cli

pytestmark = pytest.mark.unit

SEED_SET = Path(__file__).resolve().parents[2] / "training" / "router" / "data" / "prompts.jsonl"


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


def test_register_adds_the_four_subcommands():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    for argv in (
        ["router", "train", "x.jsonl"],
        ["router", "train", "--correct", "c.jsonl"],
        ["router", "calibrate", "--shares", "1,0,0,0", "x.jsonl"],
        ["router", "eval", "x.jsonl"],
        ["router", "label", "--input", "p.jsonl", "--reference", "a.jsonl", "--base-url", "http://x"],
    ):
        assert callable(parser.parse_args(argv).handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["router", "calibrate", "x.jsonl"])  # --shares is required


def test_calibrate_thresholds_prints_thresholds_shares_and_a_pasteable_block(capsys):
    argv = ["calibrate", "--shares", "0.4,0.3,0.2,0.1", str(SEED_SET), "--scorer", "features"]
    assert run([*argv, "--policy", "thresholds"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"thresholds: t1=[\d.]+, t2=[\d.]+, t3=[\d.]+", out)
    for size, target in (("0.8b", "40.0%"), ("9b", "10.0%")):
        assert re.search(rf"{re.escape(size)}\s+{re.escape(target)}\s+\d+\.\d%", out)
    block = yaml.safe_load(out.split("Paste into the cluster config:")[1])
    config = RouterConfig(**block["router"])
    assert config.scorer == "features"
    assert list(config.thresholds) == sorted(config.thresholds)


def test_calibrate_quality_fits_size_offsets_that_reach_the_shares(capsys):
    assert run(["calibrate", "--shares", "0.4,0.3,0.2,0.1", str(SEED_SET), "--scorer", "features"]) == 0
    out = capsys.readouterr().out
    achieved = {m.group(1): float(m.group(3)) for m in re.finditer(r"(\S+)\s+([\d.]+)%\s+([\d.]+)%", out)}
    assert achieved["0.8b"] == pytest.approx(40.0, abs=6) and achieved["9b"] == pytest.approx(10.0, abs=6)
    config = RouterConfig(**yaml.safe_load(out.split("Paste into the cluster config:")[1])["router"])
    assert config.policy == "quality" and config.size_bias


def test_calibrate_with_a_profile_notes_unserved_sizes(capsys):
    argv = ["calibrate", "--shares", "0.6,0.4,0,0", str(SEED_SET), "--profile", "cpu", "--scorer", "features"]
    assert run([*argv, "--policy", "thresholds"]) == 0
    assert "only 0.8b, 2b are served" in capsys.readouterr().out


def test_calibrate_rejects_bad_shares(capsys):
    assert run(["calibrate", "--shares", "0.5,0.5", str(SEED_SET)]) == cli.USAGE_ERROR
    assert "one share per size" in capsys.readouterr().err


def test_eval_prints_agreement_goals_sweep_and_writes_the_curve(tmp_path, capsys):
    curve = tmp_path / "curve.png"
    argv = ["eval", str(SEED_SET), "--split", "heldout_family", "--scorer", "features", "--curve", str(curve)]
    assert run(argv) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy vs labels: ([\d.]+) on (\d+) rows", out).group(1))
    assert 0.3 < accuracy <= 1.0
    for needle in ("confusion", "relative cost (by parameter count) vs always 9b", "Spearman", "goals", "tolerance sweep"):
        assert needle in out
    assert "APGR (RouteLLM" not in out  # the set has labels, not per-size correctness
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    assert "measured on `correct` rows" in out


def test_eval_reports_missing_labels(tmp_path, capsys):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    assert run(["eval", str(path)]) == cli.USAGE_ERROR
    assert "needs `size` or `correct`" in capsys.readouterr().err


def test_eval_threshold_override_is_validated(capsys):
    assert run(["eval", str(SEED_SET), "--thresholds", "0.8,0.5,0.2"]) == cli.USAGE_ERROR
    assert "non-decreasing" in capsys.readouterr().err


def test_train_writes_an_artifact(tmp_path, capsys):
    out_path = tmp_path / "artifact.json"
    assert run(["train", str(small_labeled(tmp_path)), "--out", str(out_path), "--max-tokens", "32"]) == 0
    out = capsys.readouterr().out
    assert "train rows: 24" in out and f"artifact written to {out_path}" in out
    artifact = LearnedArtifact.load(out_path)
    assert artifact.embedding.max_tokens == 32 and artifact.embedding.int8
    assert artifact.training["train_rows"] == 24


def test_train_fits_several_labeled_files_together(tmp_path, capsys):
    first = small_labeled(tmp_path)
    second = tmp_path / "more.jsonl"
    second.write_text(
        "".join(
            json.dumps({"prompt": f"What is {i} plus {i + 1}?", "level": 0, "family": "arithmetic", "group": "maths"})
            + "\n"
            for i in range(5)
        )
    )
    out_path = tmp_path / "artifact.json"
    assert run(["train", str(first), str(second), "--out", str(out_path), "--max-tokens", "32"]) == 0
    assert "data: small.jsonl, more.jsonl" in capsys.readouterr().out
    training = LearnedArtifact.load(out_path).training
    assert training["train_rows"] == 29 and training["data"] == ["small.jsonl", "more.jsonl"]


def test_train_rejects_rows_without_labels_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "size": "0.8b"}) + "\n" + json.dumps({"prompt": "hi"}) + "\n")
    out = tmp_path / "a.json"
    assert run(["train", str(path), "--out", str(out)]) == cli.USAGE_ERROR
    assert "x.jsonl:2: a labeled row needs `size` or `correct`" in capsys.readouterr().err
    assert not out.exists()
