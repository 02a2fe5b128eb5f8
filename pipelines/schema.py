"""The row contract between the batch stages: column types, result columns and error kinds.

Every stage reads and writes tables of `WORK_SCHEMA`, filling the columns it owns and passing the
rest through, so a stage never depends on type inference over one batch (an all-null column would
otherwise come out as the null type and clash with the next block).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

WORK_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source_uri", pa.string()),
        ("page", pa.int32()),
        ("page_count", pa.int32()),
        ("task", pa.string()),
        ("prompt", pa.string()),
        ("kind", pa.string()),
        ("image", pa.binary()),
        ("text", pa.string()),
        ("size", pa.string()),
        ("difficulty", pa.float64()),
        ("thinking", pa.bool_()),
        ("model", pa.string()),
        ("output", pa.string()),
        ("output_json", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("latency_ms", pa.float64()),
        ("error", pa.string()),
        ("error_kind", pa.string()),
    ]
)

# What lands in the result files: the columns first, then two extras (error_kind for counting
# errors by kind, page_count so a resumed run can tell a finished PDF without reading it again).
RESULT_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "source_uri",
    "page",
    "task",
    "model",
    "difficulty",
    "output",
    "output_json",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "error",
    "error_kind",
    "page_count",
)
RESULT_SCHEMA = pa.schema([WORK_SCHEMA.field(name) for name in RESULT_COLUMNS])

# What the write stage hands back to the driver for progress and the summary (one row per result row).
STATS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page", pa.int32()),
        ("model", pa.string()),
        ("error_kind", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
    ]
)

# Rows whose `kind` is one of these carry an image; the rest carry text only.
KIND_PDF_PAGE = "pdf_page"
KIND_IMAGE = "image"
KIND_TEXT = "text"
KIND_ERROR = "error"

# Page number of an error row that stands for the whole document (it could not be opened at all).
DOCUMENT_PAGE = 0


class ErrorKind:
    """Error kinds written to `error_kind` and counted in the summary."""

    UNREADABLE = "unreadable_object"
    TOO_LARGE = "object_too_large"
    EMPTY = "empty_file"
    UNSUPPORTED = "unsupported_type"
    CORRUPT_PDF = "corrupt_pdf"
    RENDER_FAILED = "render_failed"
    INVALID_IMAGE = "invalid_image"
    IMAGE_TOO_LARGE = "image_too_large"
    INVALID_MANIFEST = "invalid_manifest"
    INVALID_MANIFEST_ROW = "invalid_manifest_row"
    PROMPT_TOO_LONG = "prompt_too_long"
    ENGINE_REJECTED = "engine_rejected"
    INFERENCE_FAILED = "inference_failed"
    INVALID_OUTPUT = "invalid_output"
    # A classify/extract answer decoded under its constraint but cut by max_tokens (finish_reason
    # `length`) before it was complete: the only way such an answer can fail validation.
    OUTPUT_TRUNCATED = "output_truncated"


class RowError(Exception):
    """A row cannot be processed; it becomes an error row of `kind` with this message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self):
        return (type(self), (self.kind, self.message))


def work_row(**values: Any) -> dict[str, Any]:
    """A row of `WORK_SCHEMA` with every unnamed column null.

    Raises:
        KeyError: for a column the schema does not have.
    """
    unknown = set(values) - set(WORK_SCHEMA.names)
    if unknown:
        raise KeyError(f"not work columns: {', '.join(sorted(unknown))}")
    return {name: values.get(name) for name in WORK_SCHEMA.names}


def error_row(
    *, doc_id: str, source_uri: str, task: str, kind: str, message: str, page: int = DOCUMENT_PAGE
) -> dict[str, Any]:
    """A row that reports a failure instead of an output."""
    return work_row(
        doc_id=doc_id,
        source_uri=source_uri,
        page=page,
        page_count=0 if page == DOCUMENT_PAGE else None,
        task=task,
        kind=KIND_ERROR,
        error=message,
        error_kind=kind,
    )


def fail_row(row: dict[str, Any], kind: str, message: str) -> dict[str, Any]:
    """Turn a work row into an error row in place (its payload is dropped) and return it."""
    row.update(image=None, error=message, error_kind=kind)
    return row


def to_work_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with every work column) as a table of `WORK_SCHEMA`."""
    return pa.Table.from_pylist(list(rows), schema=WORK_SCHEMA)


def rows_of(batch: pa.Table) -> list[dict[str, Any]]:
    """The rows of a work batch as dicts, after checking it has every work column.

    Raises:
        ValueError: naming the missing columns (a stage wired in the wrong order).
    """
    missing = [name for name in WORK_SCHEMA.names if name not in batch.column_names]
    if missing:
        raise ValueError(f"batch lacks work columns: {', '.join(missing)}")
    return batch.select(WORK_SCHEMA.names).to_pylist()
