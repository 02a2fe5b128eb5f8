"""The OpenAI API on a real local Serve app, driven by the official `openai` client."""

import base64
import io
import json
import time

import httpx
import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

SIZES = ["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]


def png_bytes(size=(96, 64), color=(30, 120, 200)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(raw: bytes, media="image/png"):
    return f"data:{media};base64," + base64.b64encode(raw).decode()


def test_models_list_says_weights_are_random(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {*SIZES, "auto"}
    for name in SIZES:
        extra = models[name].model_extra
        assert extra["random_weights"] is True
        assert "random" in extra["note"].lower()


def test_single_model_lookup(client, served):
    assert client.models.retrieve("qwen3.5-2b").id == "qwen3.5-2b"
    response = httpx.get(served.base_url + "/models/qwen3.5-70b")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("model", SIZES)
def test_chat_every_size(client, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=6,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    completion = raw.parse()
    assert completion.model == model
    assert raw.headers["x-qwen-routed-model"] == model
    assert raw.headers["x-qwen-route-reason"] == "explicit"
    assert raw.headers["x-qwen-random-weights"] == "true"
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 0
    assert 1 <= completion.usage.completion_tokens <= 6
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_thinking_flag_is_honoured(client):
    thinking = client.chat.completions.create(
        model="qwen3.5-0.8b",
        messages=[{"role": "user", "content": "why?"}],
        max_tokens=6,
        temperature=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}},
    )
    plain = client.chat.completions.create(
        model="qwen3.5-0.8b",
        messages=[{"role": "user", "content": "why?"}],
        max_tokens=6,
        temperature=0,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    # Thinking on: the answer opens inside <think>, so the (random) text is reasoning; off: content.
    assert thinking.choices[0].message.model_extra.get("reasoning_content")
    assert plain.choices[0].message.content
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})
    assert thinking.usage.prompt_tokens < plain.usage.prompt_tokens


def test_streaming_matches_openai_format(client, served):
    stream = client.chat.completions.create(
        model="qwen3.5-0.8b",
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        seed=1,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(
        model="qwen3.5-0.8b",
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=8,
        temperature=0,
        seed=1,
    )
    assert streamed == whole.choices[0].message.content
    # Raw SSE framing: data lines and the [DONE] terminator.
    with httpx.stream(
        "POST",
        served.base_url + "/chat/completions",
        json={
            "model": "qwen3.5-0.8b",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 3,
            "stream": True,
        },
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    json.loads(lines[0][6:])


def test_completions_endpoint(client):
    completion = client.completions.create(model="qwen3.5-2b", prompt="Once upon a time", max_tokens=5)
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason in ("stop", "length")
    streamed = list(client.completions.create(model="qwen3.5-2b", prompt="Once", max_tokens=4, stream=True))
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")


def ask_about_image(client, url, text="What is in the picture?"):
    """A chat request with one text part and one image part, on the 0.8b model."""
    return client.chat.completions.create(
        model="qwen3.5-0.8b",
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )


def test_image_as_data_url(client):
    small = ask_about_image(client, data_url(png_bytes((32, 32))))
    large = ask_about_image(client, data_url(png_bytes((320, 240))))
    assert large.usage.prompt_tokens > small.usage.prompt_tokens  # image tokens reached the model


def test_image_from_s3(client, served):
    import boto3

    store = boto3.client("s3", endpoint_url=served.s3_endpoint, region_name="us-east-1")
    store.create_bucket(Bucket="images")
    store.put_object(Bucket="images", Key="cat.png", Body=png_bytes())

    def ask(url):
        return ask_about_image(client, url, text="describe")

    assert ask("s3://images/cat.png").usage.prompt_tokens > 20
    with pytest.raises(openai.BadRequestError) as missing:
        ask("s3://images/missing.png")
    assert missing.value.status_code == 400
    assert "s3://images/missing.png" in missing.value.message


def test_healthz_reports_capacity(served):
    deadline = time.monotonic() + 30
    while True:  # the ingress polls Serve's controller for ready replicas in the background
        response = httpx.get(served.base_url.removesuffix("/v1") + "/healthz")
        assert response.status_code == 200 and response.json()["status"] == "ok"
        if response.json()["replica_counts_known"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    capacity = response.json()["capacity"]
    assert set(capacity) == set(SIZES)
    assert all(entry["ready_replicas"] >= 1 and not entry["queue_full"] for entry in capacity.values())
    assert response.json()["replica_counts_known"] is True
