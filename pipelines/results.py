"""Result files: where they go, what they are named, how they are written and read back.

Layout: `<output>/date=YYYY-MM-DD/part-<task>-<digest>.parquet`. A file's name is a digest of the row
keys it holds, so a write task that Ray retries (worker killed after or during the write) rewrites
the same file instead of adding a second copy; each file appears atomically (see `Storage`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.schema import RESULT_COLUMNS, RESULT_SCHEMA, STATS_SCHEMA, WORK_SCHEMA
from pipelines.storage import Location, Storage


@dataclass(frozen=True)
class ResultLayout:
    """Where one job's results live.

    Attributes:
        output: the output prefix the user gave.
        run_date: the date partition.
        run_task: the job's task (part of every file name, so jobs of different tasks never collide).
    """

    output: Location
    run_date: date
    run_task: str

    @property
    def partition(self) -> Location:
        """The date partition folder."""
        return self.output.join(f"date={self.run_date.isoformat()}")

    @property
    def file_prefix(self) -> str:
        """Name prefix of this job's result files."""
        return f"part-{self.run_task}-"

    def file_for(self, keys: list[tuple[str, int, str]]) -> Location:
        """The result file holding exactly these (doc_id, page, task) keys."""
        digest = hashlib.sha256()
        for doc_id, page, task in sorted(keys):
            digest.update(f"{doc_id}\x00{page}\x00{task}\x01".encode())
        return self.partition.join(f"{self.file_prefix}{digest.hexdigest()[:24]}.parquet")

    def owns(self, location: Location) -> bool:
        """Whether `location` is one of this job's result files."""
        return location.name.startswith(self.file_prefix) and location.name.endswith(".parquet")


def encode_parquet(table: pa.Table, compression: str) -> bytes:
    """A table as the bytes of one Parquet file."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=None if compression == "none" else compression)
    return buffer.getvalue()


def write_results(batch: pa.Table, storage: Storage, layout: ResultLayout, compression: str) -> pa.Table:
    """Write one batch of finished work rows as one result file; return its stats rows.

    Raises:
        ValueError: when the batch lacks result columns.
    """
    missing = [name for name in RESULT_COLUMNS if name not in batch.column_names]
    if missing:
        raise ValueError(f"batch lacks result columns: {', '.join(missing)}")
    if batch.num_rows == 0:
        return STATS_SCHEMA.empty_table()
    results = batch.select(list(RESULT_COLUMNS)).cast(RESULT_SCHEMA)
    keys = list(zip(*(results.column(name).to_pylist() for name in ("doc_id", "page", "task")), strict=True))
    storage.write_bytes_atomic(layout.file_for(keys), encode_parquet(results, compression))
    return batch.select(STATS_SCHEMA.names).cast(STATS_SCHEMA)


def result_files(storage: Storage, layout: ResultLayout) -> list[Location]:
    """This job's result files in its partition, in name order."""
    return [info.location for info in storage.list_files(layout.partition) if layout.owns(info.location)]


def scan_results(storage: Storage, layout: ResultLayout, columns: list[str] | None = None) -> pa.Table:
    """Read (some columns of) every result file of this job; an empty table when there are none.

    Raises:
        OSError: naming the file, when a result file cannot be read.
    """
    import pyarrow.dataset as pads

    wanted = list(columns or RESULT_COLUMNS)
    schema = pa.schema([WORK_SCHEMA.field(name) for name in wanted])
    files = result_files(storage, layout)
    if not files:
        return schema.empty_table()
    dataset = pads.dataset(
        [f.path for f in files], filesystem=storage.filesystem(layout.partition), format="parquet"
    )
    return dataset.to_table(columns=wanted).cast(schema)
