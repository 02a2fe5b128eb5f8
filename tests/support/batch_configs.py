"""Batch-job configs for fault tests that must strike mid-run, on any machine however fast."""

from __future__ import annotations

from typing import Any


def trickle_config(cache_dir: str, summarize_tokens: int) -> dict[str, Any]:
    """The demo profile as a dict, one size, with rows moving through the pipeline one by one and the
    engine decoding one row at a time: results leave in a steady trickle (one answer of
    `summarize_tokens` per file slot), not all at once when a shared batch finishes. A faster machine
    shortens the gaps between result files but cannot close them, so a fault injected when the first
    file lands always finds rows written and rows still to come."""
    from cluster.config import load_config

    data = load_config(profile="demo").model_dump(mode="json")
    data["cache_dir"] = cache_dir
    data["router"]["enabled"] = False  # one inference pool
    for model in data["models"]:
        model["engine"]["max_batch_size"] = 1
    data["batch"].update(
        {
            "rows_per_file": 2,
            "progress_interval_s": 1,
            "tasks": {"max_tokens": {"summarize": summarize_tokens}},
            "default_pool": {"batch_size": 1, "concurrent_tasks_per_actor": 1, "num_cpus": 1},
            "cpu_stages": {
                "reader_max_actors": 1,
                "num_cpus": 0.25,
                "documents_per_batch": 1,
                "rows_per_task": 1,
            },
        }
    )
    return data
