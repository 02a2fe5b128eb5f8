"""A label-writer process for tests/unit/test_label_writer_kill.py, to be SIGKILLed at a known point.

    python label_writer_proc.py OUTPUT TAG STOP

It writes records named `TAG-0`, `TAG-1`, ... through the real `LabelWriter` and `ObjectStore` into
the local folder OUTPUT, all in one hour (a fixed clock, so only `flush_rows` makes a buffer due),
and reports each step as one JSON line on stdout: `{"file": path, "ids": [...]}` for every file
written. First it writes two complete files of `FILE_ROWS` records; then, by STOP:

- `buffering`: buffers two more records, reports `{"buffering": true, "ids": ids}` and waits (mid-hour);
- `writing`: buffers `FILE_ROWS` more and writes them, but halfway through the file's bytes reports
  `{"writing": temporary path, "bytes": written, "of": total, "ids": ids}` and waits there;
- `done`: buffers two more records, writes everything as at shutdown, reports `{"done": true, "ids": ids}`, exits.

The waits are where the test kills it: each is reached only after its report, so the kill lands at
the same point on every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from datetime import UTC, datetime

import deployments.object_store as object_store
from deployments.object_store import ObjectStore
from deployments.shadow.labels import SCHEMA_VERSION, answer_entry
from deployments.shadow.writer import LabelWriter

FILE_ROWS = 50
CREATED = datetime(2026, 12, 6, 5, 30, tzinfo=UTC)


def report(**fields) -> None:
    """One JSON line to the test, flushed at once (the process may be killed right after)."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def record(record_id: str) -> dict:
    """A schema-valid record; the text makes each file a few tens of KB, so a write takes a while."""
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": record_id,
        "request_hash": record_id,
        "created_at": CREATED,
        "endpoint": "chat",
        "scorer": "features",
        "family": None,
        "difficulty": 0.5,
        "features_json": "{}",
        "estimates_json": '{"0.8b": 0.5}',
        "raw_estimates_json": '{"0.8b": 0.5}',
        "routed_size": "0.8b",
        "route_reason": "quality",
        "reference_size": "0.8b",
        "verifiable": "none",
        "prompt_text": os.urandom(256).hex(),  # random, so the file is not tiny once compressed
        "answers": [answer_entry("0.8b", "user", "answered")],
    }


class _HalfThenWait:
    """A file opened for writing whose one `write` puts half the bytes on disk, reports, and waits:
    the process is then inside `ObjectStore.write_atomic` with a partial temporary file."""

    def __init__(self, path: str, ids: list[str]):
        self.handle = open(path, "wb")  # noqa: SIM115 - it is the context manager; __exit__ closes it
        self.path = path
        self.ids = ids

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def write(self, data: bytes) -> int:
        half = len(data) // 2
        self.handle.write(data[:half])
        self.handle.flush()
        report(writing=self.path, bytes=half, of=len(data), ids=self.ids)
        threading.Event().wait()  # in the writer's thread; the SIGKILL comes here
        return half  # pragma: no cover


async def main(output: str, tag: str, stop: str) -> None:
    now = CREATED.timestamp() + 60
    writer = LabelWriter(output, ObjectStore(), flush_rows=FILE_ROWS, clock=lambda: now)
    count = 0

    def add(n: int) -> list[str]:
        nonlocal count
        ids = [f"{tag}-{i}" for i in range(count, count + n)]
        for record_id in ids:
            writer.add(record(record_id))
        count += n
        return ids

    for _ in range(2):
        ids = add(FILE_ROWS)
        (path,) = await writer.flush()
        report(file=path, ids=ids)
    if stop == "buffering":
        report(buffering=True, ids=add(2))
        await asyncio.Event().wait()
    elif stop == "writing":
        ids = add(FILE_ROWS)
        # Only this process's `open` in the object store, only from here on: the real write path
        # (temporary name, then fsync and rename) runs, and stops halfway through the bytes.
        object_store.open = lambda path, mode="r", *args, **kwargs: _HalfThenWait(path, ids)
        await writer.flush()
    else:
        ids = add(2)
        for path in await writer.flush_all():
            report(file=path, ids=ids)
        report(done=True, ids=ids)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
