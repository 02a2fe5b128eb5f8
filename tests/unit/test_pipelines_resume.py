"""Resume index, result file naming, writing and reading back (local folders)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.results import ResultLayout, result_files, scan_results, write_results
from pipelines.resume import KEY_COLUMNS, DoneIndex, duplicate_keys
from pipelines.schema import RESULT_COLUMNS, STATS_SCHEMA, error_row, to_work_table, work_row
from pipelines.storage import Storage, StorageOptions, parse_uri

pytestmark = pytest.mark.unit


def result_row(doc_id: str, page: int, task: str = "describe", **extra) -> dict:
    values = dict(
        doc_id=doc_id,
        source_uri=f"/in/{doc_id}",
        page=page,
        page_count=2,
        task=task,
        kind="pdf_page",
        model="qwen3.5-0.8b",
        output="text",
        prompt_tokens=10,
        completion_tokens=3,
        latency_ms=5.0,
        image=b"dropped",
        text="dropped",
    )
    values.update(extra)
    return work_row(**values)


def test_done_index_completeness():
    done = DoneIndex()
    done.add("a.pdf", 1, "describe", 2)
    assert not done.is_complete("a.pdf", "describe")
    done.add("a.pdf", 2, "describe", 2)
    assert done.is_complete("a.pdf", "describe")
    assert not done.is_complete("a.pdf", "summarize")
    done.add("bad.pdf", 0, "describe", 0)
    assert done.is_complete("bad.pdf", "describe") and done.done_pages("bad.pdf", "describe") == frozenset()
    done.add("half.pdf", 5, "describe", None)
    assert not done.is_complete("half.pdf", "describe")
    assert done.done_pages("half.pdf", "describe") == frozenset({5})


def test_file_names_depend_on_keys_only():
    layout = ResultLayout(parse_uri("s3://b/out"), date(2026, 11, 22), "extract")
    first = layout.file_for([("a", 1, "extract"), ("b", 2, "extract")])
    assert first == layout.file_for([("b", 2, "extract"), ("a", 1, "extract")])
    assert first != layout.file_for([("a", 1, "extract")])
    assert first.uri.startswith("s3://b/out/date=2026-11-22/part-extract-") and first.uri.endswith(".parquet")
    assert layout.owns(first)
    assert not ResultLayout(layout.output, layout.run_date, "describe").owns(first)


def test_write_then_scan_round_trip(tmp_path):
    storage = Storage(StorageOptions())
    layout = ResultLayout(parse_uri(str(tmp_path)), date(2026, 1, 2), "describe")
    rows = [
        result_row("a.pdf", 1),
        result_row("a.pdf", 2),
        error_row(
            doc_id="bad.pdf", source_uri="/in/bad.pdf", task="describe", kind="corrupt_pdf", message="x"
        ),
    ]
    stats = write_results(to_work_table(rows), storage, layout, "zstd")
    assert stats.schema == STATS_SCHEMA and stats.num_rows == 3
    # A retried write of the same rows lands on the same file.
    write_results(to_work_table(rows), storage, layout, "zstd")
    [path] = result_files(storage, layout)
    written = pq.read_table(path.path)
    assert written.column_names == list(RESULT_COLUMNS)
    table = scan_results(storage, layout, columns=list(KEY_COLUMNS))
    assert sorted(zip(table["doc_id"].to_pylist(), table["page"].to_pylist(), strict=True)) == [
        ("a.pdf", 1),
        ("a.pdf", 2),
        ("bad.pdf", 0),
    ]
    done = DoneIndex.from_table(table)
    assert done.is_complete("a.pdf", "describe") and done.is_complete("bad.pdf", "describe")
    assert duplicate_keys(table) == 0


def test_scan_of_nothing_is_empty(tmp_path):
    layout = ResultLayout(parse_uri(str(tmp_path / "none")), date(2026, 1, 2), "describe")
    table = scan_results(Storage(StorageOptions()), layout)
    assert table.num_rows == 0 and table.column_names == list(RESULT_COLUMNS)


def test_duplicates_are_counted():
    table = pa.table({"doc_id": ["a", "a", "a", "b"], "page": [1, 1, 2, 1], "task": ["t"] * 4})
    assert duplicate_keys(table) == 1


def test_write_refuses_batches_without_result_columns(tmp_path):
    layout = ResultLayout(parse_uri(str(tmp_path)), date(2026, 1, 2), "describe")
    with pytest.raises(ValueError, match="lacks result columns"):
        write_results(pa.table({"doc_id": ["a"]}), Storage(StorageOptions()), layout, "zstd")
