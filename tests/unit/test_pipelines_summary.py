"""Run counters, cost estimate, progress lines and exit codes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cluster.cli import EXIT_OK, EXIT_ROWS_FAILED
from pipelines.schema import STATS_SCHEMA
from pipelines.summary import JobSummary, ProgressReporter, RunCounters

pytestmark = pytest.mark.unit


def stats(rows: list[tuple]) -> pa.Table:
    names = STATS_SCHEMA.names
    return pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows], schema=STATS_SCHEMA)


ROWS = [
    ("a.pdf", 1, "qwen3.5-0.8b", None, 100, 20),
    ("a.pdf", 2, "qwen3.5-9b", None, 100, 20),
    ("b.pdf", 0, None, "corrupt_pdf", None, None),
    ("c.png", 1, "qwen3.5-0.8b", "invalid_output", 50, 10),
]


def test_counters():
    counters = RunCounters()
    counters.add(stats(ROWS))
    assert (counters.rows, counters.pages, len(counters.documents)) == (4, 3, 3)
    assert counters.errors_by_kind == {"corrupt_pdf": 1, "invalid_output": 1}
    assert counters.rows_by_model == {"qwen3.5-0.8b": 2, "qwen3.5-9b": 1, "none": 1}
    assert counters.tokens == 300
    # 180 tokens on 0.8B (0.8/9 of 9B's cost) and 120 on 9B.
    assert counters.cost_vs_largest() == pytest.approx((180 * 0.8 / 9 + 120) / 300)
    assert RunCounters().cost_vs_largest() is None


def test_progress_lines_follow_the_interval():
    now = [0.0]
    lines: list[str] = []
    reporter = ProgressReporter(10.0, emit=lines.append, clock=lambda: now[0])
    reporter.update(stats(ROWS[:1]))
    assert lines == []
    now[0] = 12.0
    reporter.update(stats(ROWS[1:]))
    assert len(lines) == 1 and "4 rows written (2 errors) from 3 documents" in lines[0]
    assert "0.25 pages/s" in lines[0]


def summary(partition_rows, duplicates=0) -> JobSummary:
    run, partition = RunCounters(), RunCounters()
    run.add(stats(ROWS[:2]))
    partition.add(stats(partition_rows))
    return JobSummary(
        "s3://b/in", "s3://b/out/date=2026-11-22", "describe", 3, 1, run, 4.0, partition, duplicates
    )


def test_exit_code_reflects_the_whole_partition():
    assert summary(ROWS[:2]).exit_code == EXIT_OK
    assert summary(ROWS).exit_code == EXIT_ROWS_FAILED
    assert summary(ROWS[:2], duplicates=1).exit_code == EXIT_ROWS_FAILED


def test_summary_text_and_dict():
    result = summary(ROWS)
    data = result.to_dict()
    assert data["run"]["pages"] == 2 and data["pages_per_s"] == pytest.approx(0.5)
    assert data["partition_totals"]["errors_by_kind"] == {"corrupt_pdf": 1, "invalid_output": 1}
    text = result.format()
    assert "1 already complete" in text and "exit code 2" in text and "cost vs all on 9B" in text
