"""The bad-input list, against the running API: each is a 4xx OpenAI error, never a 5xx or a hang."""

from __future__ import annotations

import json
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def error_of(response: httpx.Response) -> dict:
    assert response.status_code < 500, response.text[:300]
    error = response.json()["error"]
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
    return error


def post(served, raw, path="/chat/completions", **kwargs) -> httpx.Response:
    headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(served.base_url + path, content=raw, headers=headers, timeout=60, **kwargs)


def chat(**fields) -> bytes:
    body = {"model": "qwen3.5-0.8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    return json.dumps({**body, **fields}).encode()


def test_50_mb_body_is_413_before_work(served):
    started = time.perf_counter()
    response = post(
        served, b'{"model": "qwen3.5-0.8b", "prompt": "' + b"x" * (50 * MB) + b'"}', "/completions"
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert time.perf_counter() - started < 30


def test_50_mb_chunked_body_is_413(served):
    sent = []

    def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(50):
            sent.append(MB)
            yield b" " * MB

    try:
        response = post(served, chunks())
    except (httpx.WriteError, httpx.RemoteProtocolError):
        pytest.fail("the server closed the connection without an answer")
    assert response.status_code == 413
    assert error_of(response)["param"] == "body"


def test_100_000_deep_nesting_is_400(served):
    response = post(
        served, b'{"model": "qwen3.5-0.8b", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "json_too_deep"


@pytest.mark.parametrize(
    "raw, code",
    [
        (b'{"model": "qwen3.5-0.8b", "seed": ' + b"9" * 10_000 + b"}", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"", "invalid_json"),
        (b"null", "invalid_json"),
        (chat(messages=[{"role": "user", "content": "hi"}] * 2000), "too_many_messages"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}] * 100}]),
            "too_many_parts",
        ),
        (chat(stop=list(range(200_000))), "json_too_large"),
        (chat(temperature=float("nan")).replace(b"NaN", b"NaN"), "invalid_parameter"),
    ],
)
def test_malformed_and_oversized_bodies_are_400(served, raw, code):
    response = post(served, raw)
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_s3_image_outside_the_allow_list_is_400(served):
    image = {"type": "image_url", "image_url": {"url": "s3://private-bucket/secret.png"}}
    response = post(served, chat(messages=[{"role": "user", "content": [image]}]))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_image_url"
    assert "allow" in error["message"]
