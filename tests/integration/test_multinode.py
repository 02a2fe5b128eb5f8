"""A node lost under load on a multi-node local Ray cluster (several raylets on this machine).

Each size is pinned to its worker group's custom resource exactly as rendered for KubeRay
(`cluster.k8s` plans and deployment overrides); the node that holds 2b is removed while both sizes
are under load. The scenario runs in its own process (bench/chaos.py --scenarios node), since the
session's `served` cluster already owns this process's Ray connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_removed_node_reports_its_size_unavailable_while_others_serve(demo_cache):
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    run = subprocess.run(
        [
            sys.executable,
            "bench/chaos.py",
            "--scenarios",
            "node",
            "--load-seconds",
            "3",
            "--cache",
            str(demo_cache),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    # The surviving size lost nothing and nothing hung.
    assert figures["node_0.8b_lost"] == 0, figures
    assert figures["node_0.8b_hangs"] == figures["node_2b_hangs"] == 0, figures
    # The lost size answered with retryable errors only (503/429 + Retry-After), never another 5xx.
    assert figures["node_2b_5xx_other"] == 0, figures
    assert figures["node_healthz_503_seen"], figures
