"""A label writer SIGKILLed mid-hour loses at most its open buffer, and leaves no partial or duplicate
file that a reader takes for a label file; a writer started afterwards adds files beside the old ones.

The writer runs in a real process (tests/support/label_writer_proc.py: the real `LabelWriter` and
`ObjectStore` on a local folder), killed either while it buffers or halfway through writing a file's
bytes; each kill point is reached only after the process reported it, so every run is the same.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deployments.shadow.labels import LABEL_SCHEMA
from pipelines.router_training.retrain import label_file_uris
from pipelines.router_training.shadow_labels import read_label_file
from pipelines.storage import Storage, StorageOptions

pytestmark = pytest.mark.unit

PROC = Path(__file__).parents[1] / "support" / "label_writer_proc.py"


class Writer:
    """One writer process and the JSON lines it reported."""

    def __init__(self, output: Path, tag: str, stop: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(PROC), str(output), tag, stop],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Unbuffered: `until` waits on the pipe with select(), which cannot see lines a buffered
            # reader already pulled in with an earlier one (the test then waited out its timeout).
            bufsize=0,
        )
        self.reports: list[dict] = []

    def until(self, key: str, timeout: float = 20.0) -> dict:
        """Read reports until one holds `key`; return it (fail on exit or timeout)."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    self.proc.wait(5)
                    pytest.fail(f"writer exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
                self.reports.append(json.loads(line))
                if key in self.reports[-1]:
                    return self.reports[-1]
        pytest.fail(f"no {key!r} report within {timeout} s")

    def written(self) -> dict[str, list[str]]:
        """The files it reported written, with their record ids."""
        return {r["file"]: r["ids"] for r in self.reports if "file" in r}

    def close(self) -> None:
        """Kill it if it still runs and reap it (so no test leaves a process behind)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def label_files(output: Path) -> dict[str, list[str]]:
    """What the retrain would read under `output`: each file's record ids, every file checked to
    be complete Parquet of the label schema (the retrain's reader skips nothing)."""
    files = {}
    for uri in label_file_uris(Storage(StorageOptions()), str(output)):
        rows, counts = read_label_file(uri, Path(uri).read_bytes())
        assert (counts.skipped_corrupt, counts.skipped_schema, counts.skipped_records) == (0, 0, 0), counts
        table = pq.read_table(uri)
        assert table.schema.equals(LABEL_SCHEMA, check_metadata=False)
        assert table.num_rows == pq.ParquetFile(uri).metadata.num_rows == counts.records
        files[uri] = table.column("record_id").to_pylist()
    return files


@pytest.mark.parametrize("stop", ["buffering", "writing"])
def test_a_sigkilled_writer_loses_only_its_open_buffer(tmp_path, stop):
    output = tmp_path / "labels"
    first = Writer(output, "first", stop)
    try:
        at_kill = first.until(stop)
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
    finally:
        first.close()

    # Exactly the files it reported, each whole and readable, no record in two of them.
    written = first.written()
    assert len(written) == 2
    files = label_files(output)
    assert files == written
    ids = [i for file_ids in files.values() for i in file_ids]
    assert len(ids) == len(set(ids))
    # What was lost is the open buffer, and only it: every record it made is in a file or in that.
    made = sorted(ids + at_kill["ids"])
    assert made == sorted(f"first-{i}" for i in range(len(made))) and not set(at_kill["ids"]) & set(ids)

    # Left behind: nothing, or the cut-short write's hidden temporary file, which no reader lists.
    others = sorted(p for p in output.rglob("*") if p.is_file() and str(p) not in files)
    if stop == "writing":
        (tmp,) = others
        assert str(tmp) == at_kill["writing"] and tmp.name.startswith(".tmp-")
        assert not tmp.name.endswith(".parquet") and tmp.stat().st_size == at_kill["bytes"] < at_kill["of"]
    else:
        assert others == []

    # A writer started afterwards writes new files beside the old ones, never over them.
    old_bytes = {path: Path(path).read_bytes() for path in files}
    second = Writer(output, "second", "done")
    try:
        second.until("done")
        assert second.proc.wait(10) == 0
    finally:
        second.close()
    new = second.written()
    assert len(new) == 3 and not set(new) & set(files)
    assert {path: Path(path).read_bytes() for path in files} == old_bytes
    after = label_files(output)
    assert after == files | new
    all_ids = [i for file_ids in after.values() for i in file_ids]
    assert len(all_ids) == len(set(all_ids))
