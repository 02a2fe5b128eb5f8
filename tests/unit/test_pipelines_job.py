"""Job planning and input listing (no Ray): argument checks, sizes, endpoint, what gets skipped."""

from __future__ import annotations

from datetime import date

import pytest

from cluster.config import load_config, parse_config
from pipelines.job import list_items
from pipelines.plan import BatchJobError, BatchJobSpec, plan_job
from pipelines.resume import DoneIndex
from pipelines.storage import Storage

pytestmark = pytest.mark.unit


def spec(tmp_path, task="describe", prompt=None, config=None, **kwargs) -> BatchJobSpec:
    return BatchJobSpec(
        str(tmp_path / "in"),
        str(tmp_path / "in" / "results"),
        task,
        config or load_config(profile="demo"),
        prompt=prompt,
        run_date=date(2026, 11, 22),
        **kwargs,
    )


def test_argument_checks(tmp_path):
    with pytest.raises(BatchJobError, match="--prompt"):
        plan_job(spec(tmp_path, task="custom"))
    with pytest.raises(BatchJobError, match="--task custom"):
        plan_job(spec(tmp_path, task="describe", prompt="Say hi"))
    with pytest.raises(BatchJobError, match="unsupported URI scheme"):
        plan_job(BatchJobSpec("gs://x/y", "/tmp/o", "describe", load_config(profile="demo")))
    assert plan_job(spec(tmp_path, task="custom", prompt="Say hi")).catalog.custom_prompt == "Say hi"


def test_sizes_follow_the_router_switch(tmp_path):
    data = load_config(profile="demo").model_dump(mode="json")
    data["router"]["enabled"] = False
    data["batch"]["default_size"] = "4b"
    assert [m.size for m in plan_job(spec(tmp_path, config=parse_config(data))).models] == ["4b"]
    data["models"] = [m for m in data["models"] if m["size"] != "4b"]
    with pytest.raises(BatchJobError, match="not an enabled model"):
        plan_job(spec(tmp_path, config=parse_config(data)))
    data["router"]["enabled"] = True
    assert [m.size for m in plan_job(spec(tmp_path, config=parse_config(data))).models] == [
        "0.8b",
        "2b",
        "9b",
    ]


def test_colocated_vllm_engines_must_fit_the_gpu_their_actor_reserves(tmp_path):
    data = load_config(profile="gpu").model_dump(mode="json")
    data["router"]["enabled"] = True
    data["batch"]["colocate_sizes"] = True
    data["batch"]["colocated_pool"]["num_gpus"] = 1
    claims = {
        m["size"]: m["engine"]["engine_kwargs"].get("gpu_memory_utilization", 0.9) for m in data["models"]
    }
    assert sum(claims.values()) > 1  # the gpu profile sizes each engine for a GPU of its own group
    with pytest.raises(BatchJobError, match=r"gpu_memory_utilization adds up to .* more than the 1 "):
        plan_job(spec(tmp_path, config=parse_config(data)))
    for model in data["models"]:
        model["engine"]["engine_kwargs"]["gpu_memory_utilization"] = 0.2
    assert len(plan_job(spec(tmp_path, config=parse_config(data))).models) == len(data["models"])
    data["batch"]["colocate_sizes"] = False  # a pool per size: each engine has its own GPU
    for model in data["models"]:
        model["engine"]["engine_kwargs"]["gpu_memory_utilization"] = 0.9
    assert plan_job(spec(tmp_path, config=parse_config(data)))


def test_endpoint_precedence(tmp_path, monkeypatch):
    config = load_config(profile="demo")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://from-env:9000")
    assert plan_job(spec(tmp_path, config=config)).storage_options.endpoint_url == "http://from-env:9000"
    config.object_store.endpoint_url = "http://from-config:9000"
    assert plan_job(spec(tmp_path, config=config)).storage_options.endpoint_url == "http://from-config:9000"
    flag = plan_job(spec(tmp_path, config=config, s3_endpoint="http://from-flag:9000"))
    assert flag.storage_options.endpoint_url == "http://from-flag:9000"


def test_listing_skips_output_and_complete_documents(tmp_path):
    inputs = tmp_path / "in"
    (inputs / "docs").mkdir(parents=True)
    (inputs / "results" / "date=2026-11-22").mkdir(parents=True)
    (inputs / "results" / "date=2026-11-22" / "part-describe-x.parquet").write_bytes(b"PAR1")
    for name in ("docs/a.pdf", "docs/b.png", "docs/c.txt", "m.jsonl"):
        (inputs / name).write_bytes(b"x")
    plan = plan_job(spec(tmp_path))
    done = DoneIndex()
    done.add("docs/b.png", 1, "describe", 1)  # finished image
    done.add("docs/a.pdf", 1, "describe", 3)  # a PDF with pages still to do
    done.add("m.jsonl", 0, "summarize", 0)  # another task's row counts for nothing here
    items, listed, skipped = list_items(Storage(plan.storage_options), plan, done)
    assert (listed, skipped) == (4, 1)
    assert [(i["doc_id"], i["kind"], i["size"]) for i in items] == [
        ("docs/a.pdf", "pdf", 1),
        ("docs/c.txt", "text", 1),
        ("m.jsonl", "manifest", 1),
    ]


def test_single_file_input_and_render_target(tmp_path):
    (tmp_path / "one.pdf").write_bytes(b"%PDF")
    config = load_config(profile="demo")
    plan = plan_job(BatchJobSpec(str(tmp_path / "one.pdf"), str(tmp_path / "out"), "describe", config))
    items, _, _ = list_items(Storage(plan.storage_options), plan, DoneIndex())
    assert [i["doc_id"] for i in items] == ["one.pdf"]
    assert plan.expansion_settings().target_pixels == config.models[0].engine.image_max_pixels
