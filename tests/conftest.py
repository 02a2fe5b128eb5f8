"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
