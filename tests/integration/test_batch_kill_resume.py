"""Kill a real `batch` run (driver and its whole local Ray) part way, run it again, and check that every
row ends up written exactly once. Input from a real S3 endpoint, output to a local folder. Also the
command's exit codes for a job that cannot start."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import yaml

from tests.support.batch_configs import trickle_config
from tests.support.sample_corpus import write_sample_corpus

pytestmark = pytest.mark.integration

BUCKET = "batch-kill"
REPO = Path(__file__).resolve().parents[2]


def session_members(session_id: int) -> list[int]:
    """PIDs in a session; the killed run was started in its own, so these are its processes only."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[3]) == session_id:
                        members.append(int(entry))
            except OSError:
                continue
    return members


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the run and every process it started (Ray's workers leave its process group, not its
    session), then wait until they are gone."""
    for pid in [process.pid, *session_members(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while session_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not session_members(process.pid), "processes of the killed run survived"


@pytest.fixture(scope="module")
def corpus(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    return write_sample_corpus(
        lambda key, body: client.put_object(Bucket=BUCKET, Key=f"in/{key}", Body=body),
        task="summarize",
        pdfs=3,
        pages_per_pdf=4,
        images=4,
        texts=2,
        manifest=True,
        bad_inputs=False,
    )


@pytest.fixture(scope="module")
def config_file(demo_cache, tmp_path_factory):
    data = trickle_config(str(demo_cache), summarize_tokens=64)
    data["ray"]["num_cpus"] = 4
    path = tmp_path_factory.mktemp("batch-kill") / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def batch_command(config_file: Path, output: Path, endpoint: str, summary: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cluster.cli",
        "batch",
        "--input",
        f"s3://{BUCKET}/in/",
        "--output",
        str(output),
        "--task",
        "summarize",
        "--date",
        "2026-11-22",
        "--config",
        str(config_file),
        "--s3-endpoint",
        endpoint,
        "--summary-json",
        str(summary),
    ]


def test_killed_run_resumes_and_writes_every_row_once(s3_server, corpus, config_file, tmp_path):
    output = tmp_path / "results"
    partition = output / "date=2026-11-22"
    env = {**os.environ, **s3_server.env()}
    env.pop("AWS_ENDPOINT_URL")  # the command gets the endpoint from --s3-endpoint
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        first = subprocess.Popen(
            batch_command(config_file, output, s3_server.endpoint_url, tmp_path / "first.json"),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # Kill as soon as the first result file lands (files are written atomically, so it is
            # whole): rows were written before the kill, and with results trickling out document
            # by document over seconds (64-token summaries), most are still to come.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and first.poll() is None:
                if partition.is_dir() and any(p.name.startswith("part-") for p in partition.iterdir()):
                    break
                time.sleep(0.02)  # polling a directory: there is no event to await across processes
            assert first.poll() is None, (
                "the first run ended before it could be killed:\n" + first_log.read_text()
            )
        finally:
            kill_session(first)
    assert not (tmp_path / "first.json").exists(), "the killed run must not have finished"
    written_before = (
        [p for p in partition.iterdir() if p.name.startswith("part-")] if partition.is_dir() else []
    )
    rows_before = pads.dataset(written_before, format="parquet").count_rows() if written_before else 0
    assert 0 < rows_before < len(corpus.expected), f"{rows_before} rows were written before the kill"

    second = subprocess.run(
        batch_command(config_file, output, s3_server.endpoint_url, tmp_path / "second.json"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "progress: " in second.stdout or "this run:" in second.stdout

    table = pads.dataset(partition, format="parquet").to_table()
    keys = list(
        zip(table["doc_id"].to_pylist(), table["page"].to_pylist(), table["task"].to_pylist(), strict=True)
    )
    assert Counter(keys).most_common(1)[0][1] == 1, "a row was written twice"
    assert set(keys) == {(r.doc_id, r.page, r.task) for r in corpus.expected}
    assert table["error"].null_count == table.num_rows
    assert not [p.name for p in partition.iterdir() if not p.name.startswith("part-")]

    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["run"]["rows"] == len(corpus.expected) - rows_before
    assert summary["partition_totals"]["rows"] == len(corpus.expected)
    assert summary["duplicate_rows"] == 0 and summary["exit_code"] == 0


def test_exit_code_one_when_the_job_cannot_start(config_file, tmp_path):
    base = [
        sys.executable,
        "-m",
        "cluster.cli",
        "batch",
        "--input",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
    ]
    no_prompt = subprocess.run(
        [*base, "--task", "custom", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_prompt.returncode == 1 and "--prompt" in no_prompt.stderr
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("models: []\nbatch: {pdf_dpii: 3}\n")
    invalid = subprocess.run(
        [*base, "--task", "describe", "--config", str(bad_config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert invalid.returncode == 1 and "batch.pdf_dpii" in invalid.stderr
    bad_date = subprocess.run(
        [*base, "--task", "describe", "--date", "22/11/2026"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad_date.returncode == 1 and "YYYY-MM-DD" in bad_date.stderr
