"""The public-results table: readers of each source format, the evaluation-set exclusion, table I/O,
ladders, and the shipped table itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.router_training import public_sources as readers
from pipelines.router_training.public_table import (
    BuildReport,
    Exclusion,
    ModelInfo,
    PublicRow,
    ladders,
    load_models,
    load_table,
    normalise,
    save_table,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "training" / "router" / "data"


def test_normalise_folds_case_punctuation_and_unicode():
    assert normalise("  What’s  the CAPITAL of France?\n") == "whats the capital of france"


def test_exclusion_matches_equal_and_contained_questions_only():
    exclusion = Exclusion({"gsm8k_test": ["Natalia sold clips to 48 of her friends in April."], "tiny": ["hi"]})
    assert exclusion.match("natalia sold clips to 48 of her friends in april") == "gsm8k_test"
    assert exclusion.match("Solve: Natalia sold clips to 48 of her friends in April. Answer:") == "gsm8k_test"
    assert exclusion.match("hi") is None  # too short to exclude on
    assert exclusion.sizes() == {"gsm8k_test": 1, "tiny": 0}


def test_mmlu_pro_grades_pred_against_answer_and_counts_bad_rows():
    report = BuildReport()
    records = [
        {"question_id": 1, "question": "Q1?", "options": ["x", "y"], "answer": "B", "pred": "B", "category": "math"},
        {"question_id": 2, "question": "Q2?", "options": "['x', 'y']", "answer": "A", "pred": None, "category": "law"},
        {"question_id": 3, "question": "Q3?"},
    ]
    got = readers.mmlu_pro(records, "mmlu_pro", report)
    assert got["1"].correct == 1 and got["1"].group == "maths" and "B. y" in got["1"].prompt
    assert got["2"].correct == 0 and got["2"].group == "knowledge"
    assert "3" not in got
    assert sum(report.skipped.values()) == 1


def test_crux_compares_literals_from_the_json_reply():
    output = '```json\n{"reasoning": "r", "answer": "[1, 2]"}\n```'
    assert readers.crux_predicted(output) == "[1, 2]"
    assert readers.crux_predicted("no json here") is None
    report = BuildReport()
    records = [
        {"id": "a", "question": "q", "answer": "[1,2]", "output": [output]},
        {"id": "b", "question": "q", "answer": "'x'", "output": ['{"answer": "\'y\'"}']},
        {"id": "c"},
    ]
    got = readers.zeroeval_crux(records, "crux", report)
    assert got["a"].correct == 1 and got["b"].correct == 0 and "c" not in got
    assert report.skipped[("crux", "record lacks question, output, answer or id")] == 1


def test_llmrouter_rounds_scores_and_keys_by_text():
    report = BuildReport()
    records = [
        {"question": "Write a python function to add", "scores": {"m1": 1.0, "m2": 0.6667, "other": 1}},
        {"question": "", "scores": {"m1": 1}},
        {"scores": {}},
        {"question": "Who wrote Hamlet?", "scores": {"m1": "x"}},
    ]
    got = readers.llmrouter_dc(records, ["m1", "m2"], "llmrouter", report)
    key = normalise("Write a python function to add")
    assert got["m1"][key].correct == 1 and got["m2"][key].correct == 1
    assert got["m1"][key].group == "coding"
    assert "other" not in got
    assert sum(report.skipped.values()) == 3


def test_home_assistant_pools_runs_of_a_task():
    text = (
        "task_id,model_id,category,text,label\n"
        "t-0,m,light,Kitchen light off,Good\n"
        "t-1,m,light,Kitchen light off,Bad\n"
        "u-0,m,light,Open the garage,Bad\n"
        "v-0,m,light,,Good\n"
        "t-0,other,light,Kitchen light off,Bad\n"
    )
    report = BuildReport()
    got = readers.home_assistant_csv(text, "m", "ha", report)
    assert got["t"].correct == 1 and got["t"].tools and got["u"].correct == 0
    assert report.skipped[("ha", "row lacks task id, text or a Good/Bad label")] == 1


def test_table_round_trip(tmp_path):
    rows = [PublicRow("s:1", "s", "maths", "2+2?", {"b": 1, "a": 0}, tools=True)]
    path = save_table(rows, tmp_path / "t.jsonl.gz")
    assert load_table(path) == rows
    assert save_table(rows, tmp_path / "u.jsonl.gz").read_bytes() == path.read_bytes()


def test_load_table_names_the_bad_line(tmp_path):
    import gzip

    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write('{"id": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl.gz:1"):
        load_table(path)


def test_ladders_pair_adjacent_sizes_of_a_family():
    models = {
        "a-7b": ModelInfo("a", 7),
        "a-70b": ModelInfo("a", 70),
        "a-13b": ModelInfo("a", 13),
        "b-7b": ModelInfo("b", 7),
    }
    assert ladders(models, ["a-7b", "a-70b", "a-13b", "b-7b"]) == [("a-7b", "a-13b"), ("a-13b", "a-70b")]
    assert ladders(models, ["a-7b", "b-7b"]) == []


def test_shipped_table_has_several_sources_and_ladders():
    # The input is part of the repository: a missing file fails this test.
    rows = load_table(DATA / "public.jsonl.gz")
    models = load_models(DATA / "public_models.json")
    sources = {r.source for r in rows}
    assert {"mmlu_pro", "crux", "llmrouter", "home_assistant"} <= sources
    for source in sources:
        present = {m for r in rows if r.source == source for m in r.correct}
        assert ladders(models, present), source
    assert (DATA / "public.jsonl.gz").stat().st_size < 30_000_000
