"""Batch `extract` and `classify` decode under their constraint: on the demo profile (random weights,
which never write valid JSON unconstrained) well-formed documents give zero error rows, every
`output_json` validates against the `--schema` file, and every classify label is one of the labels.
The command runs end to end as a user runs it (`qwen-cluster batch`, local input and output, its
own local Ray)."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest
import yaml
from jsonschema import Draft202012Validator

from cluster.cli import EXIT_OK, main

# One local Ray for both jobs: the command joins it instead of starting its own each time.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_ray")]

LABELS = ["invoice", "receipt", "letter"]
# Bounded fields, so even a random-weight model closes the object within the token budget.
SCHEMA = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "maxLength": 12},
        "total": {"type": "integer", "minimum": 0, "maximum": 100000},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "paid": {"type": "boolean"},
    },
    "required": ["number", "total", "currency", "paid"],
    "additionalProperties": False,
}
DOCUMENTS = {
    "inv-1.txt": "INVOICE A-17\nACME GmbH to Example Ltd\nTotal due: 120 EUR\nStatus: paid",
    "inv-2.md": "# Invoice 2026-044\nConsulting, 3 days.\n\nTotal: 4,500 USD (unpaid)",
    "note.txt": "Receipt no. 88 - coffee and cake - 7 GBP, paid in cash.",
    "letter.txt": "Dear Ms Smith,\nthank you for your order. The invoice follows.\nKind regards",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("structured-in")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    return folder


def job_config(tmp_path, demo_cache) -> str:
    from cluster.config import load_config

    data = load_config(profile="demo").model_dump(mode="json")
    data["cache_dir"] = str(demo_cache)
    data["ray"]["num_cpus"] = 4
    data["router"]["enabled"] = False
    data["batch"].update(
        {
            "tasks": {"classify_labels": LABELS, "max_tokens": {"extract": 96, "classify": 8}},
            "default_pool": {"batch_size": 4, "num_cpus": 1},
            "cpu_stages": {"reader_max_actors": 1, "num_cpus": 0.25},
        }
    )
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def run(args: list[str], tmp_path, demo_cache) -> tuple[int, list[dict], dict]:
    summary_path = tmp_path / "summary.json"
    code = main(
        ["batch", *args, "--config", job_config(tmp_path, demo_cache), "--summary-json", str(summary_path)]
    )
    output = [a for a in args if a.startswith(str(tmp_path))][0]
    rows = pads.dataset(output, format="parquet", partitioning="hive").to_table().to_pylist()
    return code, rows, json.loads(summary_path.read_text())


def test_extract_under_the_schema_file_writes_no_error_rows(tmp_path, corpus, demo_cache):
    schema_path = tmp_path / "invoice.schema.json"
    schema_path.write_text(json.dumps(SCHEMA))
    out = str(tmp_path / "extract-out")
    code, rows, summary = run(
        ["--input", str(corpus), "--output", out, "--task", "extract", "--schema", str(schema_path)],
        tmp_path,
        demo_cache,
    )
    errors = [(r["doc_id"], r["error_kind"], r["error"]) for r in rows if r["error"]]
    assert errors == [], errors
    assert code == EXIT_OK and summary["run"]["rows"] == len(DOCUMENTS)
    validator = Draft202012Validator(SCHEMA)
    for row in rows:
        validator.validate(json.loads(row["output_json"]))
        assert row["model"] == "qwen3.5-0.8b" and row["completion_tokens"] > 0


def test_classify_answers_one_of_the_labels(tmp_path, corpus, demo_cache):
    out = str(tmp_path / "classify-out")
    code, rows, _ = run(["--input", str(corpus), "--output", out, "--task", "classify"], tmp_path, demo_cache)
    assert [r for r in rows if r["error"]] == []
    assert code == EXIT_OK and len(rows) == len(DOCUMENTS)
    assert all(json.loads(r["output_json"])["label"] in LABELS and r["output"] in LABELS for r in rows)
