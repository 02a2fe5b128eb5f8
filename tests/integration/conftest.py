"""A real local Ray cluster serving the demo profile over real HTTP, shared by the serving tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

# The ports a local cluster of ours takes (below the ephemeral range, where Ray's own processes do
# not take theirs while it starts); the other test modules import it from here.
from cluster.local_haproxy import free_port


@dataclass
class ServedCluster:
    """Where the session's Serve app answers."""

    config: object
    base_url: str
    secure_url: str
    metrics_url: str
    api_key: str
    s3_endpoint: str


SECURE_KEY = "sk-test-" + "abc123"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint (moto_server) on a free loopback port, with dummy credentials set."""
    import os

    from tests.support.s3 import MotoS3Server

    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def served(demo_cache, tmp_path_factory, s3_server):
    """Start local Ray + Serve with two apps, stop both afterwards.

    - `qwen` at `/`: the demo profile, four sizes, auth off;
    - `qwen-secure` at `/secure`: 0.8b and 2b, auth on, one request at a time and a queue of one per
      size (so overload, 429, can be provoked), and escalation forced on for `auto`.
    """
    import os

    from ray import serve

    from cluster import local
    from cluster.config import load_config, parse_config
    from deployments.app import build_app_from_config

    config = load_config(profile="demo")
    config.cache_dir = demo_cache
    config.serving.port = free_port()
    config.ray.metrics_export_port = free_port(exclude=[config.serving.port])
    config.ray.num_cpus = 8
    config.object_store.endpoint_url = s3_server.endpoint_url
    config.serving.media.s3.allow = ["images"]  # the bucket test_image_from_s3 reads

    keys_file = tmp_path_factory.mktemp("auth") / "keys.txt"
    keys_file.write_text(f"# test keys\n{SECURE_KEY}\n")
    secure_data = config.model_dump(mode="json")
    secure_data["models"] = [m for m in secure_data["models"] if m["size"] in ("0.8b", "2b")]
    for model in secure_data["models"]:
        model["deployment"] = {
            "num_replicas": 1,
            "max_ongoing_requests": 1,
            "max_queued_requests": 1,
            "num_cpus": 0.5,
        }
    # Every answer from random weights has a mean log-probability below zero: `auto` always escalates.
    secure_data["router"] = {
        "enabled": True,
        "scorer": "features",
        "capacity_fallback": "off",
        "escalation": {"enabled": True, "min_mean_logprob": -0.0001},
    }
    secure_data["serving"].update(
        app_name="qwen-secure", route_prefix="/secure", default_model="qwen3.5-0.8b"
    )
    secure_data["serving"]["auth"] = {
        "enabled": True,
        "keys_file": str(keys_file),
        "keys_env": "QWEN_TEST_NO_KEYS",
    }
    secure = parse_config(secure_data)
    os.environ.pop("QWEN_TEST_NO_KEYS", None)

    local.start_ray(config)
    try:
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=600)
        serve.run(build_app_from_config(secure), name="qwen-secure", route_prefix="/secure")
        base = local.endpoint(config)
        yield ServedCluster(
            config=config,
            base_url=base + "/v1",
            secure_url=base + "/secure/v1",
            metrics_url=f"http://127.0.0.1:{config.ray.metrics_export_port}/metrics",
            api_key=SECURE_KEY,
            s3_endpoint=s3_server.endpoint_url,
        )
    finally:
        local.shutdown(config)


@pytest.fixture
def client(served):
    """The official `openai` client pointed at the demo app."""
    from openai import OpenAI

    with OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=60) as openai_client:
        yield openai_client


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module's tests (left alone when one is already running)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, include_dashboard=False)
    yield
    if started:
        ray.shutdown()
