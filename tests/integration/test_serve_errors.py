"""Bad input, auth and overload on the real Serve app: OpenAI-style 4xx bodies, replicas unharmed."""

import base64
import concurrent.futures
import io

import httpx
import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.integration


def post(served, body=None, raw=None, path="/chat/completions", headers=None, base=None):
    url = (base or served.base_url) + path
    if raw is not None:
        return httpx.post(
            url, content=raw, headers={"content-type": "application/json", **(headers or {})}, timeout=60
        )
    return httpx.post(url, json=body, headers=headers or {}, timeout=60)


def assert_openai_error(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert (error["param"] or "").startswith(param)
    return error


def user(content):
    return {"model": "qwen3.5-0.8b", "messages": [{"role": "user", "content": content}], "max_tokens": 4}


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def png_url(size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 0, 0)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_malformed_json(served):
    assert_openai_error(post(served, raw=b'{"model": "qwen3.5-0.8b", "messages": ['), 400, "invalid_json")


def test_unknown_model(served):
    error = assert_openai_error(
        post(served, {**user("x"), "model": "qwen3.5-70b"}), 404, "model_not_found", "model"
    )
    assert "qwen3.5-0.8b" in error["message"]


@pytest.mark.parametrize(
    "change, param",
    [
        ({"temperature": -1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 9}, "n"),  # over serving.limits.max_n (8)
        ({"top_p": 1.5}, "top_p"),
        ({"messages": []}, "messages"),
        ({"stream": "yes"}, "stream"),
        ({"mystery": True}, "mystery"),
    ],
)
def test_bad_parameters(served, change, param):
    assert_openai_error(post(served, {**user("x"), **change}), 400, "invalid_parameter", param)


def test_undecodable_image(served):
    junk = "data:image/png;base64," + base64.b64encode(b"this is not a png").decode()
    error = assert_openai_error(post(served, user([image_part(junk)])), 400, "invalid_image")
    assert "not a recognised image format" in error["message"]


def test_image_the_processor_refuses(served):
    # 8000x10: the Qwen image processor raises ValueError past an aspect ratio of 200; the ingress
    # reads the header and refuses it first.
    error = assert_openai_error(post(served, user([image_part(png_url((8000, 10)))])), 400, "invalid_image")
    assert "at most 200 times" in error["message"]


def test_too_many_images(served):
    parts = [image_part(png_url((8, 8)))] * 5  # the demo models accept 4
    assert_openai_error(post(served, user(parts)), 400, "too_many_images")


def test_too_large_image(served):
    # 3000x3000 RGB noise-free PNG is small in bytes but 9M pixels; the byte limit case:
    huge = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"0" * (11 * 1024 * 1024)).decode()
    assert_openai_error(post(served, user([image_part(huge)])), 400, "image_too_large")


def test_private_url_refused(served):
    error = assert_openai_error(
        post(served, user([image_part("https://169.254.169.254/latest/meta-data/")])),
        400,
        "invalid_image_url",
        "messages[0].content[0].image_url",
    )
    assert "link-local" in error["message"]


def test_prompt_over_context_limit(served):
    error = assert_openai_error(post(served, user("word " * 5000)), 400, "context_length_exceeded")
    assert "4096" in error["message"]
    streamed = post(served, {**user("word " * 5000), "stream": True})
    assert_openai_error(streamed, 400, "context_length_exceeded")


def test_replicas_survive_bad_input(client):
    completion = client.chat.completions.create(
        model="qwen3.5-0.8b", messages=[{"role": "user", "content": "still fine?"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_wrong_route_and_method(served):
    assert_openai_error(httpx.get(served.base_url + "/embeddings"), 404)
    assert_openai_error(httpx.get(served.base_url + "/chat/completions"), 405)


def test_auth_required_when_enabled(served):
    from openai import OpenAI

    assert_openai_error(post(served, user("x"), base=served.secure_url), 401, "invalid_api_key")
    assert_openai_error(
        post(served, user("x"), base=served.secure_url, headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_api_key",
    )
    with (
        OpenAI(base_url=served.secure_url, api_key="wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()
    with OpenAI(base_url=served.secure_url, api_key=served.api_key, max_retries=0) as good:
        assert [m.id for m in good.models.list().data] == ["qwen3.5-0.8b", "qwen3.5-2b", "auto"]
        answer = good.chat.completions.create(
            model="qwen3.5-0.8b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert answer.usage.completion_tokens >= 1
    # Health stays open for probes.
    assert httpx.get(served.secure_url.removesuffix("/v1") + "/healthz").status_code == 200


def test_auth_off_needs_no_key(served):
    assert httpx.get(served.base_url + "/models").status_code == 200


def test_full_queue_gets_fast_429(served):
    """The secure app takes one request at a time and queues one: a burst overflows it."""
    headers = {"Authorization": f"Bearer {served.api_key}"}
    body = {**user("long answer please"), "max_tokens": 200, "temperature": 1.0}

    def send(_):
        return post(served, body, base=served.secure_url, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(send, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 429 in statuses, statuses
    assert set(statuses) <= {200, 429}
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert_openai_error(rejected, 429, "overloaded")
    assert rejected.elapsed.total_seconds() < 2.0
