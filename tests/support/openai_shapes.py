"""Check response bodies against OpenAI's API reference: the `openai` package's own response types,
plus the required keys (pydantic's `model_validate` accepts a body that leaves optional-typed but
reference-required fields out, such as `message.refusal`)."""

from __future__ import annotations

import json
from typing import Any

_LOGPROB = ("token", "logprob", "bytes", "top_logprobs")
_TOP = ("token", "logprob", "bytes")


def _keys(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in obj]
    assert not missing, f"{where} lacks required {missing}: {json.dumps(obj)[:300]}"


def _chat_logprobs(logprobs: dict[str, Any] | None, where: str) -> None:
    if logprobs is None:
        return
    for i, entry in enumerate(logprobs.get("content") or []):
        _keys(entry, _LOGPROB, f"{where}.logprobs.content[{i}]")
        for j, top in enumerate(entry["top_logprobs"]):
            _keys(top, _TOP, f"{where}.logprobs.content[{i}].top_logprobs[{j}]")


def check_chat_completion(body: dict[str, Any]) -> None:
    """A non-streamed chat completion is a valid `ChatCompletion` with every required key."""
    from openai.types.chat import ChatCompletion

    ChatCompletion.model_validate(body)
    _keys(body, ("id", "object", "created", "model", "choices"), "chat.completion")
    assert body["object"] == "chat.completion"
    for i, choice in enumerate(body["choices"]):
        where = f"choices[{i}]"
        _keys(choice, ("index", "message", "finish_reason", "logprobs"), where)
        _keys(choice["message"], ("role", "content", "refusal"), f"{where}.message")
        for j, call in enumerate(choice["message"].get("tool_calls") or []):
            _keys(call, ("id", "type", "function"), f"{where}.message.tool_calls[{j}]")
            _keys(call["function"], ("name", "arguments"), f"{where}.message.tool_calls[{j}].function")
            json.loads(call["function"]["arguments"])
        _chat_logprobs(choice["logprobs"], where)
    if "usage" in body:
        _keys(body["usage"], ("prompt_tokens", "completion_tokens", "total_tokens"), "usage")


def check_chat_chunks(chunks: list[dict[str, Any]]) -> None:
    """Every streamed chunk is a valid `ChatCompletionChunk` with every required key."""
    from openai.types.chat import ChatCompletionChunk

    for n, chunk in enumerate(chunks):
        ChatCompletionChunk.model_validate(chunk)
        _keys(chunk, ("id", "object", "created", "model", "choices"), f"chunk {n}")
        assert chunk["object"] == "chat.completion.chunk"
        for choice in chunk["choices"]:
            _keys(choice, ("index", "delta", "finish_reason"), f"chunk {n} choice")
            for call in choice["delta"].get("tool_calls") or []:
                _keys(call, ("index",), f"chunk {n} tool call")
            _chat_logprobs(choice.get("logprobs"), f"chunk {n}")


def check_completion(body: dict[str, Any], streamed: bool = False) -> None:
    """A text completion is a valid `Completion` with required keys; a streamed chunk has the same
    keys (its `finish_reason` is null until the last chunk, which the type's Literal does not allow,
    so the SDK builds chunks without validation)."""
    from openai.types import Completion

    if not streamed:
        Completion.model_validate(body)
    _keys(body, ("id", "object", "created", "model", "choices"), "text_completion")
    for i, choice in enumerate(body["choices"]):
        _keys(choice, ("index", "text", "logprobs", "finish_reason"), f"choices[{i}]")
        if choice["logprobs"] is not None:
            _keys(choice["logprobs"], ("tokens", "token_logprobs", "top_logprobs", "text_offset"), "logprobs")


def sse_payloads(text: str) -> list[Any]:
    """The JSON payloads of an SSE body, `[DONE]` left out (asserted to be last)."""
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line.strip()]
    assert events and events[-1] == "[DONE]", events[-1:]
    return [json.loads(event) for event in events[:-1]]


def assemble_tool_calls(chunks: list[dict[str, Any]], index: int = 0) -> list[dict[str, Any]]:
    """The tool calls a client rebuilds from streamed deltas of choice `index` (as the SDKs do)."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["index"] != index:
                continue
            for delta in choice["delta"].get("tool_calls") or []:
                if delta["index"] not in calls:
                    assert delta.get("id") and delta.get("type") == "function", delta
                    assert "name" in delta["function"], delta
                    calls[delta["index"]] = {"id": delta["id"], "name": "", "arguments": ""}
                call = calls[delta["index"]]
                call["name"] += delta["function"].get("name") or ""
                call["arguments"] += delta["function"].get("arguments") or ""
    return [calls[i] for i in sorted(calls)]
