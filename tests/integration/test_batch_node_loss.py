"""A batch job loses the worker node running its inference actor mid-run, on a multi-node local Ray
cluster, and still writes every row exactly once. The scenario runs in its own process
(bench/batch_node_loss.py), since the session's `served` cluster already owns this process's Ray
connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_batch_job_survives_losing_a_worker_node(demo_cache):
    run = subprocess.run(
        [sys.executable, "bench/batch_node_loss.py", "--cache", str(demo_cache), "--timeout", "420"],
        cwd=REPO,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["removed_node_ran_inference"], figures  # the engine's own node went
    assert 0 < figures["rows_before_removal"] < figures["expected_rows"], figures  # mid-run
    assert not figures["hung"] and figures["job_error"] is None, figures
    assert figures["written_rows"] == figures["expected_rows"], figures
    assert figures["duplicate_rows"] == 0 and figures["missing_rows"] == 0, figures
    assert figures["exit_code"] == 0, figures
