"""One input file of many text rows reaches the inference pool as many small blocks.

Ray Data joins a task's output tables into blocks of up to 128 MiB, so the rows one reader task
expanded from a JSONL manifest came out as one block: one inference task, so one busy actor however
large the pool, and nothing written until the whole file was answered. The reader's output is
re-cut to `batch.cpu_stages.rows_per_task` rows per block (pipelines/flow.py `_read`).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

ROWS = 100
ROWS_PER_TASK = 16


def test_one_manifest_of_text_rows_is_cut_into_blocks_of_rows_per_task(tmp_path, demo_config, local_ray):
    import ray

    from pipelines.flow import _read
    from pipelines.job import list_items
    from pipelines.plan import BatchJobSpec, plan_job
    from pipelines.resume import DoneIndex
    from pipelines.storage import Storage

    manifest = tmp_path / "in" / "rows.jsonl"
    manifest.parent.mkdir()
    with manifest.open("w") as out:
        for i in range(ROWS):
            out.write(json.dumps({"id": f"doc-{i:03d}", "text": f"Document number {i} says hello."}) + "\n")
    config = demo_config.model_copy(deep=True)
    config.router.enabled = False
    config.batch.cpu_stages.rows_per_task = ROWS_PER_TASK
    plan = plan_job(BatchJobSpec(str(manifest.parent), str(tmp_path / "out"), "custom", config, prompt="Say:"))
    done = DoneIndex()
    items, listed, _ = list_items(Storage(plan.storage_options), plan, done)
    assert listed == 1 and len(items) == 1

    bundles = list(_read(plan, items, ray.put(done)).iter_internal_ref_bundles())
    sizes = [meta.num_rows for bundle in bundles for meta in bundle.metadata]

    assert sum(sizes) == ROWS
    assert max(sizes) <= ROWS_PER_TASK
    assert len(sizes) >= ROWS // ROWS_PER_TASK
