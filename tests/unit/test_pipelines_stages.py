"""The CPU stages as plain functions and classes (no Ray), and the batch config."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from cluster.batch_config import BatchConfig, TaskSettings
from cluster.router_config import RouterConfig
from pipelines.results import ResultLayout, result_files
from pipelines.schema import WORK_SCHEMA, ErrorKind, error_row, rows_of, to_work_table, work_row
from pipelines.stages import (
    ScoreDifficulty,
    assign_default_size,
    postprocess,
    preprocess_images,
    write_result_batch,
)
from pipelines.storage import Storage, StorageOptions, parse_uri
from tests.support.sample_corpus import make_huge_image, make_image

pytestmark = pytest.mark.unit


def image_row(doc_id: str, data: bytes) -> dict:
    return work_row(
        doc_id=doc_id, source_uri=doc_id, page=1, page_count=1, task="describe", kind="image", image=data
    )


def test_preprocess_shrinks_and_fails_rows_not_batches():
    batch = to_work_table(
        [
            image_row("ok.png", make_image(900, 900, "png", 1)),
            image_row("bad.png", b"nope"),
            image_row("huge.png", make_huge_image(1_200_000)),
            error_row(doc_id="e.pdf", source_uri="e.pdf", task="describe", kind="corrupt_pdf", message="x"),
        ]
    )
    rows = rows_of(preprocess_images(batch, target_pixels=40_000, max_pixels=1_000_000, image_format="png"))
    assert len(rows) == 4
    ok, bad, huge, earlier = rows
    assert ok["error_kind"] is None and len(ok["image"]) < len(batch.column("image")[0].as_py())
    assert (bad["error_kind"], bad["image"]) == (ErrorKind.INVALID_IMAGE, None)
    assert huge["error_kind"] == ErrorKind.IMAGE_TOO_LARGE
    assert earlier["error_kind"] == "corrupt_pdf"


def test_default_size():
    rows = [work_row(doc_id=str(i), page=1, task="describe", kind="text", text="t") for i in range(3)]
    assigned = rows_of(assign_default_size(to_work_table(rows), size="2b", thinking=False))
    assert {(r["size"], r["thinking"], r["difficulty"]) for r in assigned} == {("2b", False, None)}


def test_score_difficulty_with_the_feature_router():
    stage = ScoreDifficulty(
        RouterConfig(enabled=True, scorer="features"), ["0.8b", "2b", "4b", "9b"], TaskSettings(), None, None
    )
    rows = [
        work_row(doc_id="easy", page=1, task="classify", kind="text", text="Hi."),
        work_row(
            doc_id="hard",
            page=1,
            task="custom",
            kind="text",
            prompt=(
                "Prove step by step that the sum of two even numbers is even, then write a Python function "
                "that checks it, and explain the reasoning behind every step of the proof in detail."
            ),
            text="x " * 2000,
        ),
        error_row(doc_id="e", source_uri="e", task="describe", kind="corrupt_pdf", message="x"),
    ]
    easy, hard, failed = rows_of(stage(to_work_table(rows)))
    assert 0.0 <= easy["difficulty"] < hard["difficulty"] <= 1.0
    assert easy["size"] in ("0.8b", "2b", "4b", "9b") and hard["size"] != "0.8b"
    assert isinstance(hard["thinking"], bool)
    assert failed["size"] is None and failed["difficulty"] is None


def test_postprocess_validates_and_drops_payloads():
    settings = TaskSettings(classify_labels=["invoice", "letter"])
    rows = [
        work_row(doc_id="a", task="classify", output="Letter", image=b"x", text="t"),
        work_row(doc_id="b", task="classify", output="a poem"),
        work_row(doc_id="c", task="describe", output="<think>\n</think>\n\nA cat."),
        work_row(doc_id="d", task="describe", error="boom", error_kind="inference_failed"),
    ]
    out = rows_of(
        postprocess(
            to_work_table(rows), task_settings=settings, custom_prompt=None, fail_on_invalid_output=True
        )
    )
    assert json.loads(out[0]["output_json"]) == {"label": "letter"} and out[0]["image"] is None
    assert out[0]["text"] is None and out[0]["error"] is None
    assert out[1]["error_kind"] == ErrorKind.INVALID_OUTPUT and out[1]["output"] == "a poem"
    assert (out[2]["output"], out[2]["error"]) == ("A cat.", None)
    assert out[3]["error_kind"] == "inference_failed"
    lenient = rows_of(
        postprocess(
            to_work_table(rows[1:2]), task_settings=settings, custom_prompt=None, fail_on_invalid_output=False
        )
    )
    assert lenient[0]["error"] is None and lenient[0]["output_json"] is None


def test_write_stage_returns_stats(tmp_path):
    layout = ResultLayout(parse_uri(str(tmp_path)), date(2026, 3, 4), "describe")
    rows = [
        work_row(
            doc_id="a",
            page=1,
            task="describe",
            model="qwen3.5-2b",
            output="x",
            prompt_tokens=3,
            completion_tokens=2,
        )
    ]
    stats = write_result_batch(
        to_work_table(rows), storage_options=StorageOptions(), layout=layout, compression="snappy"
    )
    assert stats.to_pylist() == [
        {
            "doc_id": "a",
            "page": 1,
            "model": "qwen3.5-2b",
            "error_kind": None,
            "prompt_tokens": 3,
            "completion_tokens": 2,
        }
    ]
    assert len(result_files(Storage(StorageOptions()), layout)) == 1


def test_rows_of_names_missing_columns():
    import pyarrow as pa

    with pytest.raises(ValueError, match="lacks work columns"):
        rows_of(pa.table({"doc_id": ["a"]}))
    assert to_work_table([]).schema == WORK_SCHEMA


def test_batch_config_validation():
    config = BatchConfig.model_validate({"pools": {"2b": {"batch_size": 4, "num_gpus": 0.5}}})
    assert config.pool_for("2b").batch_size == 4 and config.pool_for("9b").batch_size == 8
    with pytest.raises(ValidationError, match="min_actors"):
        BatchConfig.model_validate({"default_pool": {"min_actors": 3, "max_actors": 2}})
    with pytest.raises(ValidationError, match="extra"):
        BatchConfig.model_validate({"pdf_dpii": 100})
    with pytest.raises(ValidationError, match="not a valid JSON schema"):
        BatchConfig.model_validate({"tasks": {"extract_schema": {"type": "no-such-type"}}})
    with pytest.raises(ValidationError, match="distinct"):
        BatchConfig.model_validate({"tasks": {"classify_labels": ["a", "A"]}})
    assert BatchConfig().tasks.max_tokens.for_task("classify") == 16
    assert all(field.description for field in BatchConfig.model_fields.values())
