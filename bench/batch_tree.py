"""Runs the batch job of another checkout of this project: `bench/batch_throughput.py --baseline tree`
starts it with the checkout as its working directory and PYTHONPATH, so every import (engine, router,
pipeline, config) is that commit's code, not only its `pipelines/`.

    python bench/batch_tree.py demo-models OVERRIDES.json
    python bench/batch_tree.py scores OVERRIDES.json INPUT_URI ENDPOINT
    python bench/batch_tree.py run OVERRIDES.json INPUT_URI OUTPUT_URI ENDPOINT

OVERRIDES.json holds the bench's settings (`ray`, `sizes`, `router`, `batch`, `cache_dir`), applied to
the checkout's own demo profile; router keys that commit does not know are dropped. `scores` prints the
router's difficulty for every page as a JSON list (so the caller can set equal-share thresholds);
`run` runs the job and prints its summary as JSON on the last line. Written against the job API the
project has kept since its first round (`BatchJobSpec`, `plan_job`, `list_items`, `run_batch_job`).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path


def demo_config(overrides: dict):
    """The demo profile of the project on the import path, with the bench's overrides (also what
    bench/batch_throughput.py runs the working tree with); router keys it does not know are dropped,
    and `cache_dir` is kept unless the overrides name one."""
    from cluster.config import load_config, parse_config

    data = load_config(profile="demo").model_dump(mode="json")
    data["ray"].update(overrides["ray"])
    data["models"] = data["models"][: overrides["sizes"]]
    data["router"].update({k: v for k, v in overrides["router"].items() if k in data["router"]})
    data["batch"].update(overrides["batch"])
    if "cache_dir" in overrides:
        data["cache_dir"] = overrides["cache_dir"]
    return parse_config(data)


def _planning_module():
    """Where that checkout keeps `BatchJobSpec` and `plan_job` (`pipelines.job` before they moved)."""
    try:
        from pipelines import plan
    except ImportError:
        from pipelines import job as plan
    return plan


def page_scores(config, input_uri: str, endpoint: str) -> list[float]:
    """The router's difficulty of every page, scored as that commit's job scores them."""
    from deployments.router import build_router
    from deployments.router.routing_input import from_request
    from pipelines import job
    from pipelines.documents import DocumentExpander
    from pipelines.resume import DoneIndex
    from pipelines.storage import Storage

    planning = _planning_module()
    plan = planning.plan_job(planning.BatchJobSpec(input_uri, "/unused", "describe", config, s3_endpoint=endpoint))
    storage = Storage(plan.storage_options)
    items = job.list_items(storage, plan, DoneIndex())[0]
    if hasattr(plan, "expansion_settings"):
        expander = DocumentExpander(storage, plan.expansion_settings(), DoneIndex(), light=True)
    else:  # the first round rendered pages before scoring them
        expander = DocumentExpander(storage, job.expansion_settings(plan), DoneIndex())
    rows = [row for item in items for row in expander.expand(item) if row["error_kind"] is None]
    router = build_router(config.router, served_sizes=[m.size for m in config.enabled_models()])
    decisions = router.decide_many([from_request(plan.catalog.messages(row), None) for row in rows])
    return [decision.difficulty for decision in decisions]


def main(argv: list[str]) -> int:
    command, overrides_path, *places = argv
    overrides = json.loads(Path(overrides_path).read_text())
    config = demo_config(overrides)
    if command == "demo-models":
        try:
            from deployments.engines.demo_models import ensure_demo_models
        except ImportError:  # where the first round kept them
            from cluster.demo_models import ensure_demo_models

        ensure_demo_models(config.cache_dir, sizes=[m.size for m in config.enabled_models()])
        return 0
    if command == "scores":
        input_uri, endpoint = places
        print(json.dumps(page_scores(config, input_uri, endpoint)))
        return 0
    from pipelines.job import run_batch_job

    BatchJobSpec = _planning_module().BatchJobSpec  # noqa: N806
    input_uri, output_uri, endpoint = places
    spec = BatchJobSpec(
        input_uri, output_uri, "describe", config, run_date=date(2026, 11, 22), s3_endpoint=endpoint
    )
    summary = run_batch_job(spec, emit=lambda line: print("   ", line, flush=True))
    print(json.dumps(summary.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
