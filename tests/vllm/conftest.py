"""The vLLM tier: the same API on vLLM's CPU build, in the venv `make test-vllm` builds (.venv-vllm).

A local Ray + Serve app serves the demo 0.8b checkpoint with `engine.kind: vllm` on CPU (bfloat16,
eager mode, a small KV cache: docs/vllm-cpu.md says why). The fixtures are named as the
integration tier's (`served`, `client`), so its tests run here unchanged where they fit (see
test_vllm_api.py). Each test module skips itself, with that reason, where vLLM is not installed (an
optional engine); this file imports nothing of vLLM.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import SECURE_KEY, ServedCluster, free_port, s3_server  # noqa: F401

MODEL = "qwen3.5-0.8b"
# GiB of KV cache per engine: vLLM's CPU default (4) is more than the demo needs on a shared machine.
KVCACHE_GIB = "1"


def vllm_config_data(demo_cache) -> dict:
    """The demo profile cut to one size on the vLLM engine, as a plain dict (also used by the batch
    and parity tests)."""
    from cluster.config import load_config

    config = load_config(profile="demo")
    config.cache_dir = demo_cache
    data = config.model_dump(mode="json")
    model = next(m for m in data["models"] if m["size"] == "0.8b")
    model["engine"].update(
        kind="vllm",
        dtype="bfloat16",  # vLLM's CPU Gated DeltaNet kernel refuses float32
        max_model_len=4096,
        # Eager mode skips about 30 s of graph compile at start; the tier measures behaviour, not speed.
        engine_kwargs={"enforce_eager": True},
    )
    model["deployment"].update(num_cpus=1)
    data["models"] = [model]
    data["router"] = {"enabled": True, "fallback_size": "0.8b", "scorer": "features"}
    data["serving"]["default_model"] = MODEL
    return data


@pytest.fixture(scope="session")
def vllm_env():
    """The env vLLM's CPU build needs, set before Ray starts so replicas inherit it."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KVCACHE_GIB)
    return {"VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"]}


@pytest.fixture(scope="session")
def served(demo_cache, vllm_env, s3_server):  # noqa: F811 - the integration tier's fixture, reused
    """Local Ray + Serve with the 0.8b demo model on vLLM at `/`; stopped afterwards."""
    from cluster import local
    from cluster.config import parse_config
    from deployments.app import build_app_from_config

    data = vllm_config_data(demo_cache)
    config = parse_config(data)
    config.cache_dir = demo_cache
    config.serving.port = free_port()
    config.ray.metrics_export_port = free_port(exclude=[config.serving.port])
    config.ray.num_cpus = 4
    config.object_store.endpoint_url = s3_server.endpoint_url
    config.serving.media.s3.allow = ["images"]
    local.start_ray(config)
    try:
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=600)
        base = local.endpoint(config)
        yield ServedCluster(
            config=config,
            base_url=base + "/v1",
            secure_url=base + "/v1",
            metrics_url=f"http://127.0.0.1:{config.ray.metrics_export_port}/metrics",
            api_key=SECURE_KEY,
            s3_endpoint=s3_server.endpoint_url,
        )
    finally:
        local.shutdown()


@pytest.fixture
def client(served):
    """The official `openai` client pointed at the vLLM-engine app."""
    from openai import OpenAI

    with OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=120) as openai_client:
        yield openai_client
