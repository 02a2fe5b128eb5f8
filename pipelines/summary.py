"""Progress while a batch job runs and the summary at its end.

The write stage hands the driver one small stats row per written result row; `RunCounters` adds them
up, `ProgressReporter` prints a line every few seconds, and `JobSummary` combines this run's counts
with the whole partition's (read back from the result files) for the final report and exit code.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cluster.catalog import relative_cost, spec_for
from cluster.cli import EXIT_OK, EXIT_ROWS_FAILED
from pipelines.schema import DOCUMENT_PAGE

log = logging.getLogger(__name__)

NO_MODEL = "none"



@dataclass
class RunCounters:
    """Counts over result rows (this run's stats rows, or a partition's result columns)."""

    rows: int = 0
    pages: int = 0
    documents: set[str] = field(default_factory=set)
    errors_by_kind: Counter = field(default_factory=Counter)
    rows_by_model: Counter = field(default_factory=Counter)
    tokens_by_model: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, table: pa.Table) -> None:
        """Count a table with doc_id, page, model, error_kind, prompt_tokens, completion_tokens."""
        columns = table.select(
            ["doc_id", "page", "model", "error_kind", "prompt_tokens", "completion_tokens"]
        ).to_pydict()
        for doc_id, page, model, error_kind, prompt, completion in zip(*columns.values(), strict=True):
            self.rows += 1
            self.documents.add(doc_id)
            if page != DOCUMENT_PAGE:
                self.pages += 1
            if error_kind:
                self.errors_by_kind[error_kind] += 1
            self.rows_by_model[model or NO_MODEL] += 1
            tokens = (prompt or 0) + (completion or 0)
            self.prompt_tokens += prompt or 0
            self.completion_tokens += completion or 0
            if model:
                self.tokens_by_model[model] += tokens

    @property
    def errors(self) -> int:
        """Rows that failed, of any kind."""
        return sum(self.errors_by_kind.values())

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def cost_vs_largest(self) -> float | None:
        """Estimated cost relative to running every row on 9B: tokens weighted by each size's relative
        cost (parameter count), over the same tokens at 9B's. None when no tokens were generated.

        It assumes each row would take the same tokens on 9B, which holds for the prompt only.
        """
        total = sum(self.tokens_by_model.values())
        if not total:
            return None
        weighted = sum(
            tokens * relative_cost(spec_for(model).size) for model, tokens in self.tokens_by_model.items()
        )
        return weighted / total

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "documents": len(self.documents),
            "pages": self.pages,
            "rows": self.rows,
            "errors": self.errors,
            "errors_by_kind": dict(sorted(self.errors_by_kind.items())),
            "rows_by_model": dict(sorted(self.rows_by_model.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_vs_9b": self.cost_vs_largest(),
        }


class ProgressReporter:
    """Counts stats rows as they arrive and emits a progress line every `interval_s`.

    Args:
        interval_s: seconds between lines.
        emit: where lines go (the logger by default).
        clock: monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        interval_s: float,
        emit: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval_s = interval_s
        self.emit = emit or log.info
        self.clock = clock
        self.counters = RunCounters()
        self.started = clock()
        self._last_emit = self.started

    def update(self, stats: pa.Table) -> None:
        """Count one batch of stats rows; emit a line when the interval has passed."""
        self.counters.add(stats)
        now = self.clock()
        if now - self._last_emit >= self.interval_s:
            self._last_emit = now
            self.emit(self.line())

    @property
    def elapsed_s(self) -> float:
        """Seconds since the reporter started."""
        return self.clock() - self.started

    def line(self) -> str:
        """One progress line."""
        c, elapsed = self.counters, max(self.elapsed_s, 1e-9)
        return (
            f"progress: {c.rows} rows written ({c.errors} errors) from {len(c.documents)} documents, "
            f"{c.pages} pages in {elapsed:.0f}s: {c.pages / elapsed:.2f} pages/s, {c.tokens / elapsed:.0f} tokens/s"
        )


@dataclass
class JobSummary:
    """What a finished job reports.

    Attributes:
        input_uri: the input prefix.
        partition_uri: the date partition written.
        task: the job's task.
        listed_documents: documents (files and manifests) found under the input prefix.
        skipped_documents: listed files skipped because an earlier run finished them.
        run: this run's counts.
        elapsed_s: wall time of the pipeline.
        partition: counts over every result row of this task in the partition, after the run.
        duplicate_rows: rows in the partition repeating another row's key (0 when exactly-once held).
    """

    input_uri: str
    partition_uri: str
    task: str
    listed_documents: int
    skipped_documents: int
    run: RunCounters
    elapsed_s: float
    partition: RunCounters
    duplicate_rows: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every row of the partition succeeded, 2 when some failed (1 is for a failed job)."""
        return EXIT_ROWS_FAILED if self.partition.errors or self.duplicate_rows else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (`--summary-json`)."""
        elapsed = max(self.elapsed_s, 1e-9)
        return {
            "input": self.input_uri,
            "partition": self.partition_uri,
            "task": self.task,
            "listed_documents": self.listed_documents,
            "skipped_documents": self.skipped_documents,
            "elapsed_s": round(self.elapsed_s, 3),
            "pages_per_s": self.run.pages / elapsed,
            "tokens_per_s": self.run.tokens / elapsed,
            "run": self.run.to_dict(),
            "partition_totals": self.partition.to_dict(),
            "duplicate_rows": self.duplicate_rows,
            "exit_code": self.exit_code,
        }

    def format(self) -> str:
        """The human-readable summary."""
        data = self.to_dict()
        run, total = data["run"], data["partition_totals"]

        def counts(mapping: dict[str, int]) -> str:
            return ", ".join(f"{key} {value}" for key, value in mapping.items()) or "none"

        cost = total["cost_vs_9b"]
        lines = [
            f"batch {self.task}: {self.input_uri} -> {self.partition_uri}",
            f"  input: {self.listed_documents} objects listed, {self.skipped_documents} already complete",
            f"  this run: {run['documents']} documents, {run['pages']} pages, {run['rows']} rows, "
            f"{run['errors']} errors in {self.elapsed_s:.1f}s",
            f"  throughput: {data['pages_per_s']:.2f} pages/s, {data['tokens_per_s']:.0f} tokens/s "
            f"({run['prompt_tokens']} prompt + {run['completion_tokens']} completion tokens)",
            f"  rows per model: {counts(run['rows_by_model'])}",
            f"  errors by kind: {counts(run['errors_by_kind'])}",
            f"  partition now: {total['documents']} documents, {total['rows']} rows, {total['errors']} errors "
            f"({counts(total['errors_by_kind'])}), duplicates {self.duplicate_rows}",
            f"  rows per model (partition): {counts(total['rows_by_model'])}",
            "  estimated cost vs all on 9B: "
            + (
                f"{cost:.3f} ({cost * 100:.1f}% by parameter count)"
                if cost is not None
                else "n/a (no tokens)"
            ),
            f"  exit code {self.exit_code}",
        ]
        return "\n".join(lines)
