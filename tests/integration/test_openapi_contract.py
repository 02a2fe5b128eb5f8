"""Bodies checked against OpenAI's published OpenAPI schemas (tests/support/openapi): chat,
completion, chunk, models and error bodies, and the parameters official clients send.

22 checks. They run on the transformers engine here and, imported, on the vLLM engine in the vLLM
tier (tests/vllm/test_vllm_contract.py): one contract for both engines.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.openapi import schema_errors

pytestmark = pytest.mark.integration

MODEL = "qwen3.5-0.8b"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 6}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "digit",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"d": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["d"],
            "additionalProperties": False,
        },
    },
}


def chat(**extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, **extra}


def completion(**extra):
    return {"model": MODEL, "prompt": "Once upon", "max_tokens": 5, **extra}


# (id, path, request body, response schema); a streamed request validates every chunk.
CASES = [
    ("chat", "/chat/completions", chat(), "CreateChatCompletionResponse"),
    ("chat-n", "/chat/completions", chat(n=2, temperature=1.0, seed=4), "CreateChatCompletionResponse"),
    (
        "chat-logprobs",
        "/chat/completions",
        chat(logprobs=True, top_logprobs=2),
        "CreateChatCompletionResponse",
    ),
    (
        "chat-json-schema",
        "/chat/completions",
        chat(response_format=SCHEMA_FORMAT, max_tokens=40),
        "CreateChatCompletionResponse",
    ),
    (
        "chat-json-object",
        "/chat/completions",
        chat(response_format={"type": "json_object"}, max_tokens=12),
        "CreateChatCompletionResponse",
    ),
    (
        "chat-tools-auto",
        "/chat/completions",
        chat(tools=[WEATHER], tool_choice="auto"),
        "CreateChatCompletionResponse",
    ),
    (
        "chat-tools-named",
        "/chat/completions",
        chat(
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=40,
        ),
        "CreateChatCompletionResponse",
    ),
    # Parallel calls allowed (the clients' default) and cut by max_tokens: the finished calls come back.
    (
        "chat-tools-required-cut",
        "/chat/completions",
        chat(tools=[WEATHER], tool_choice="required", max_tokens=24),
        "CreateChatCompletionResponse",
    ),
    ("chat-stream", "/chat/completions", chat(stream=True), "CreateChatCompletionStreamResponse"),
    (
        "chat-stream-usage",
        "/chat/completions",
        chat(stream=True, stream_options={"include_usage": True}),
        "CreateChatCompletionStreamResponse",
    ),
    (
        "chat-stream-logprobs",
        "/chat/completions",
        chat(stream=True, logprobs=True, top_logprobs=1),
        "CreateChatCompletionStreamResponse",
    ),
    (
        "chat-stream-tools-required",
        "/chat/completions",
        chat(stream=True, tools=[WEATHER], tool_choice="required", max_tokens=24),
        "CreateChatCompletionStreamResponse",
    ),
    ("completion", "/completions", completion(), "CreateCompletionResponse"),
    ("completion-logprobs", "/completions", completion(logprobs=2), "CreateCompletionResponse"),
    ("completion-stream", "/completions", completion(stream=True), "CreateCompletionResponse"),
    # What the official clients send beyond the basics.
    (
        "chat-client-parameters",
        "/chat/completions",
        chat(
            max_tokens=None,
            max_completion_tokens=6,
            temperature=0.7,
            top_p=0.9,
            presence_penalty=0.1,
            frequency_penalty=0.1,
            seed=7,
            stop=["\n\n"],
            parallel_tool_calls=True,
            tools=[WEATHER],
            user="contract-test",
        ),
        "CreateChatCompletionResponse",
    ),
    (
        "completion-client-parameters",
        "/completions",
        completion(temperature=0.5, top_p=0.9, seed=7, stop=["."], n=2, user="contract-test"),
        "CreateCompletionResponse",
    ),
]
REQUEST_SCHEMAS = {
    "/chat/completions": "CreateChatCompletionRequest",
    "/completions": "CreateCompletionRequest",
}


def sse_payloads(text: str) -> list[dict]:
    """The JSON payloads of an SSE body, `[DONE]` left out."""
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert lines and lines[-1] == "[DONE]", text[-300:]
    return [json.loads(line) for line in lines[:-1]]


def _as_final_completion(chunk: dict) -> dict:
    """A streamed completion chunk checked as the document can: it has no chunk schema for legacy
    completions, only `CreateCompletionResponse`, whose `finish_reason` is never null. OpenAI's own
    streams (and vLLM's) send null until the last chunk, so null passes here, as "length" would."""
    choices = [{**c, "finish_reason": c["finish_reason"] or "length"} for c in chunk["choices"]]
    return {**chunk, "choices": choices}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_body_matches_openai_schema(served, case):
    name, path, body, schema = case
    body = {key: value for key, value in body.items() if value is not None}
    assert schema_errors(body, REQUEST_SCHEMAS[path]) == []  # the request is one a client may send
    response = httpx.post(served.base_url + path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    payloads = sse_payloads(response.text) if body.get("stream") else [response.json()]
    for payload in payloads:
        if body.get("stream") and path == "/completions":
            payload = _as_final_completion(payload)
        assert schema_errors(payload, schema) == [], payload
        assert isinstance(payload.get("system_fingerprint"), str)
    if name == "chat-tools-required-cut":
        choice = payloads[0]["choices"][0]
        assert choice["finish_reason"] in ("length", "tool_calls")
        assert not (choice["message"]["content"] or "").lstrip().startswith("[")  # never raw JSON
    if name == "chat-stream-tools-required":
        deltas = [c["choices"][0]["delta"] for c in payloads if c["choices"]]
        assert not any((d.get("content") or "").lstrip().startswith("[") for d in deltas)


def test_models_match_openai_schema(served):
    listed = httpx.get(served.base_url + "/models", timeout=30)
    assert listed.status_code == 200 and schema_errors(listed.json(), "ListModelsResponse") == []
    one = httpx.get(served.base_url + "/models/" + MODEL, timeout=30)
    assert one.status_code == 200 and schema_errors(one.json(), "Model") == []


@pytest.mark.parametrize(
    "body, raw, status, code",
    [
        (chat(temperature=-1), None, 400, "invalid_parameter"),
        (chat(model="qwen3.5-70b"), None, 404, "model_not_found"),
        (chat(messages=[{"role": "user", "content": "word " * 5000}]), None, 400, "context_length_exceeded"),
        (None, b'{"model": "qwen3.5-0.8b", "messages": [', 400, "invalid_json"),
    ],
    ids=["bad-parameter", "unknown-model", "context-length", "invalid-json"],
)
def test_errors_match_openai_schema(served, body, raw, status, code):
    url = served.base_url + "/chat/completions"
    if raw is None:
        response = httpx.post(url, json=body, timeout=60)
    else:
        response = httpx.post(url, content=raw, headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text
    assert schema_errors(response.json(), "ErrorResponse") == []
    assert response.json()["error"]["code"] == code
