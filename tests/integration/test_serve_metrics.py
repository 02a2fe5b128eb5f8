"""Serving metrics reach Prometheus through Ray's metrics agent."""

import time
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_request_token_and_latency_metrics_exported(client, served):
    client.chat.completions.create(
        model="qwen3.5-2b", messages=[{"role": "user", "content": "count me"}], max_tokens=3
    )
    list(
        client.chat.completions.create(
            model="qwen3.5-2b", messages=[{"role": "user", "content": "and me"}], max_tokens=3, stream=True
        )
    )
    wanted = [
        "ray_qwen_requests_total",
        "ray_qwen_tokens_total",
        "ray_qwen_request_latency_s_bucket",
        "ray_qwen_time_to_first_token_s_bucket",
    ]
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = scrape(served.metrics_url)
        lines = [line for line in text.splitlines() if 'model="qwen3.5-2b"' in line]
        if all(any(line.startswith(name) for line in lines) for name in wanted):
            break
        time.sleep(2)
    lines = [line for line in text.splitlines() if 'model="qwen3.5-2b"' in line]
    for name in wanted:
        assert any(line.startswith(name) for line in lines), f"{name} missing"
    requests = [
        line for line in lines if line.startswith("ray_qwen_requests_total") and 'status="200"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in requests) >= 2
    assert any('kind="completion"' in line for line in lines if line.startswith("ray_qwen_tokens_total"))
