"""Fixtures shared by every test tier."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import pytest

# After the last test, the interpreter must exit within this long. A thread nobody stopped (an engine's
# loop that was never shut down) once kept a finished, green run alive until CI's 90-minute limit.
EXIT_DEADLINE_S = 120


def pytest_unconfigure(config):
    """Arm a watchdog for interpreter exit: past the deadline, dump every thread's stack and exit 1."""
    faulthandler.dump_traceback_later(EXIT_DEADLINE_S, exit=True)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """A cache folder with all four demo checkpoints, generated once per test session.

    `QWEN_CLUSTER_CACHE` (set by .ci/run) is reused when present so CI generates them once.
    """
    from deployments.engines.demo_models import ensure_demo_models

    root = (
        Path(os.environ["QWEN_CLUSTER_CACHE"])
        if os.environ.get("QWEN_CLUSTER_CACHE")
        else tmp_path_factory.mktemp("qwen-cache")
    )
    ensure_demo_models(root)
    return root


@pytest.fixture
def demo_config(demo_cache):
    """The demo profile pointed at the session's demo checkpoints."""
    from cluster.config import load_config

    config = load_config(profile="demo")
    config.cache_dir = demo_cache
    return config
