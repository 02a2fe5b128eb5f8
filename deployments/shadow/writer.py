"""Label records to Parquet files partitioned by hour, each file appearing atomically, exactly once.

The writer lives in the ingress process, one per ingress replica, rather than in an actor of its
own: the records are born there, so nothing is serialised or sent per record, and there is no extra
actor to place, restart or scale; each replica writes its own files, so writers never coordinate.
The cost is one file per ingress replica per hour, which the retrain reads as one dataset.

Layout: `<output>/date=YYYY-MM-DD/hour=HH/labels-<writer>-<seq>.parquet`. `<writer>` is unique per
writer (a random id made at start), `<seq>` counts that writer's files of the hour, so a name is
never used twice; a failed write is retried under the same name (an overwrite of identical bytes,
not a second file). Each file is encoded in memory and put whole (S3) or written under a temporary
name and renamed (local), so a reader never sees a partial file, and a killed writer loses only the
records it still buffered (at most `max_buffer_s` of them).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq

from deployments.background import stop_task
from deployments.object_store import ObjectStore, join_uri
from deployments.shadow.labels import to_table

log = logging.getLogger(__name__)


def hour_key(moment: datetime) -> str:
    """`YYYY-MM-DDTHH` of a UTC time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def file_uri(output: str, hour: str, writer_id: str, seq: int) -> str:
    """Where one label file goes."""
    day, hh = hour.split("T")
    return join_uri(output, f"date={day}", f"hour={hh}", f"labels-{writer_id}-{seq:04d}.parquet")


@dataclass
class _Buffer:
    opened: float
    rows: list[dict[str, Any]] = field(default_factory=list)


class LabelWriter:
    """Buffers records per hour and writes each buffer as one Parquet file.

    Args:
        output: the `router.shadow.output` URI.
        store: object storage.
        flush_rows: write a buffer early once it holds this many records.
        max_buffer_s: write a buffer once it is this old, even mid-hour.
        writer_id: unique per writer; random when None.
        clock: seconds since the epoch (tests move it).
    """

    def __init__(
        self,
        output: str,
        store: ObjectStore,
        flush_rows: int = 5000,
        max_buffer_s: float = 3600.0,
        writer_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.output = output
        self.store = store
        self.flush_rows = flush_rows
        self.max_buffer_s = max_buffer_s
        self.writer_id = writer_id or uuid.uuid4().hex[:12]
        self.clock = clock
        self.buffers: dict[str, _Buffer] = {}
        self.next_seq: dict[str, int] = {}
        self.written_files: list[str] = []
        self.written_records = 0
        self.failed_writes = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def add(self, record: dict[str, Any]) -> None:
        """Buffer one record under the hour of its `created_at`."""
        hour = hour_key(record["created_at"])
        buffer = self.buffers.get(hour)
        if buffer is None:
            buffer = self.buffers[hour] = _Buffer(opened=self.clock())
        buffer.rows.append(record)

    def due(self) -> list[str]:
        """Hours whose buffer must be written now: the hour is over, the buffer is full or old."""
        now = self.clock()
        current = hour_key(datetime.fromtimestamp(now, UTC))
        return [
            hour
            for hour, buffer in self.buffers.items()
            if buffer.rows
            and (
                hour < current
                or len(buffer.rows) >= self.flush_rows
                or now - buffer.opened >= self.max_buffer_s
            )
        ]

    async def flush(self, hours: list[str] | None = None) -> list[str]:
        """Write the given hours' buffers (the due ones by default); return the files written.

        A buffer whose write fails is kept and tried again (same file name) on the next flush.
        """
        written = []
        async with self._lock:
            for hour in self.due() if hours is None else hours:
                # Taken out before any await: records added while this one is written start a
                # new buffer instead of landing in a list that is about to be dropped.
                buffer = self.buffers.pop(hour, None)
                if buffer is None or not buffer.rows:
                    continue
                seq = self.next_seq.get(hour, 0)
                uri = file_uri(self.output, hour, self.writer_id, seq)
                try:
                    data = await asyncio.to_thread(_encode, buffer.rows)
                    await asyncio.to_thread(self.store.write_atomic, uri, data)
                except Exception as error:  # storage down: keep the records, try again later
                    self.failed_writes += 1
                    log.warning(
                        "could not write label file %s (%d records kept): %r", uri, len(buffer.rows), error
                    )
                    newer = self.buffers.get(hour)
                    if newer is not None:  # the same name next time, holding these and the newer
                        buffer.rows.extend(newer.rows)
                    self.buffers[hour] = buffer
                    continue
                self.next_seq[hour] = seq + 1
                self.written_records += len(buffer.rows)
                self.written_files.append(uri)
                written.append(uri)
        return written

    async def flush_all(self) -> list[str]:
        """Write every buffer now (shutdown)."""
        return await self.flush(list(self.buffers))

    def start(self, interval_s: float) -> None:
        """Check for due buffers every `interval_s` (needs a running loop; idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(interval_s), name="label-writer")

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception:  # never let the loop die: the next tick tries again
                log.exception("label writer tick failed")

    async def close(self) -> None:
        """Stop the loop and write what is buffered."""
        await stop_task(self._task)
        self._task = None
        await self.flush_all()


def _encode(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(to_table(rows), buffer, compression="zstd")
    return buffer.getvalue()
