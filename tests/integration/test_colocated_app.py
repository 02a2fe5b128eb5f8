"""A one-size cluster served by one deployment (the ingress with the size's engine inside each
replica, `serving.ingress.colocate_single_size`): the same API over real HTTP, and a killed replica
comes back whole."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.chaos import kill_replicas, wait_for_health

pytestmark = pytest.mark.integration

APP = "qwen-solo"


@pytest.fixture(scope="module")
def solo(served):
    """The demo 0.8b alone, router off, at `/solo` beside the session's apps; deleted afterwards."""
    from ray import serve

    from cluster.config import parse_config
    from deployments.app import build_app_from_config

    data = served.config.model_dump(mode="json")
    data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
    data["models"][0]["deployment"] = {"num_replicas": 1, "num_cpus": 0.5, "max_ongoing_requests": 8}
    data["router"] = {"enabled": False}
    data["serving"].update(app_name=APP, route_prefix="/solo", default_model="qwen3.5-0.8b")
    config = parse_config(data)
    assert config.colocated_model() is not None
    serve.run(build_app_from_config(config), name=APP, route_prefix="/solo")
    base = served.base_url.removesuffix("/v1") + "/solo"
    try:
        wait_for_health(base, 120)
        yield base
    finally:
        serve.delete(APP)


def test_one_deployment_serves_chat_and_streams(solo):
    from ray import serve

    assert list(serve.status().applications[APP].deployments) == ["openai-ingress"]
    client = openai.OpenAI(base_url=solo + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="qwen3.5-0.8b", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens >= 1
    chunks = list(
        client.chat.completions.create(
            model="qwen3.5-0.8b",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    # The replica admits for itself: every slot it handed out came back.
    health = httpx.get(solo + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["capacity"]["qwen3.5-0.8b"]["in_flight_here"] == 0
    # A bad request is still a 4xx with an OpenAI error body, from the same replica.
    bad = httpx.post(
        solo + "/v1/chat/completions", json={"model": "qwen3.5-0.8b", "messages": []}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_killed_replica_comes_back_and_answers(solo):
    kill_replicas(APP, "openai-ingress")
    started = time.monotonic()
    wait_for_health(solo, 120, expect_outage=True)
    response = httpx.post(
        solo + "/v1/chat/completions",
        json={"model": "qwen3.5-0.8b", "messages": [{"role": "user", "content": "again"}], "max_tokens": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:300]
    assert time.monotonic() - started < 120
