"""Reading the ingress's label files (deployments/shadow/labels.py) for the retrain job.

A file that is not Parquet, is cut short, or has another schema version is skipped and counted,
never fatal: one bad file must not stop a nightly retrain. Each good record becomes one fitting row
per size whose correctness is known: (request_hash, size, the scorer's raw estimate for it,
difficulty, correct), plus the per-token probability quantile the escalation threshold is fitted on.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from deployments.shadow.labels import SCHEMA_VERSION

FIT_COLUMNS = (
    "request_hash",
    "size",
    "source",
    "estimate",
    "difficulty",
    "correct",
    "prob_q10",
    "completion_tokens",
    "next_size_tokens",
)
NEEDED = ("schema_version", "request_hash", "scorer", "difficulty", "raw_estimates_json", "answers")


@dataclass
class ReadCounts:
    """What reading the label files found."""

    files: int = 0
    records: int = 0
    rows: int = 0
    skipped_corrupt: int = 0
    skipped_schema: int = 0
    skipped_records: int = 0
    skipped_other_scorer: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: ReadCounts) -> None:
        """Sum another count into this one (first few problems kept)."""
        for name in (
            "files",
            "records",
            "rows",
            "skipped_corrupt",
            "skipped_schema",
            "skipped_records",
            "skipped_other_scorer",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems = (self.problems + other.problems)[:20]


def fit_rows(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The fitting rows of one record (answers with a known `correct` and an estimate)."""
    estimates = json.loads(record["raw_estimates_json"] or "{}")
    answers = [a for a in record["answers"] or [] if a.get("outcome") == "answered"]
    tokens = {a["size"]: a.get("completion_tokens") for a in answers}
    order = sorted(tokens, key=lambda s: float(s.rstrip("b")))
    for answer in answers:
        size = answer["size"]
        if answer.get("correct") is None or size not in estimates:
            continue
        bigger = [s for s in order if float(s.rstrip("b")) > float(size.rstrip("b"))]
        yield {
            "request_hash": record["request_hash"],
            "size": size,
            "source": answer.get("source"),
            "estimate": float(estimates[size]),
            "difficulty": float(record["difficulty"]),
            "correct": bool(answer["correct"]),
            "prob_q10": answer.get("prob_q10"),
            "completion_tokens": answer.get("completion_tokens"),
            "next_size_tokens": tokens[bigger[0]] if bigger else None,
        }


def read_label_file(
    name: str, data: bytes, scorer: str | None = None
) -> tuple[list[dict[str, Any]], ReadCounts]:
    """The fitting rows of one file and what was skipped; with `scorer`, records whose estimates
    came from another scorer are skipped too (a calibration maps one scorer's estimates)."""
    counts = ReadCounts(files=1)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as error:
        counts.skipped_corrupt = 1
        counts.problems.append(f"{name}: not readable Parquet ({error})")
        return [], counts
    missing = [c for c in NEEDED if c not in table.column_names]
    versions = set(table.column("schema_version").to_pylist()) if not missing else set()
    if missing or versions != {SCHEMA_VERSION}:
        counts.skipped_schema = 1
        what = f"lacks {missing}" if missing else f"schema_version {sorted(versions)}"
        counts.problems.append(f"{name}: {what}; this job reads version {SCHEMA_VERSION}")
        return [], counts
    rows = []
    for record in table.select(list(NEEDED)).to_pylist():
        counts.records += 1
        if scorer is not None and record["scorer"] != scorer:
            counts.skipped_other_scorer += 1
            continue
        try:
            rows.extend(fit_rows(record))
        except (TypeError, ValueError, KeyError, AttributeError):
            counts.skipped_records += 1
    counts.rows = len(rows)
    return rows, counts
