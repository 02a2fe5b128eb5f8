"""OpenAI response bodies and SSE chunks, built as plain dicts (cheaper than models on the hot path)."""

from __future__ import annotations

import json
import time
from typing import Any

from deployments.model_server import GenerationResult


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event, as OpenAI streams them."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(result: GenerationResult) -> dict[str, Any]:
    """`choices[].logprobs` of a chat completion."""
    return {
        "content": [
            {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}
            for token, logprob in zip(result.tokens, result.logprobs, strict=False)
        ]
    }


def chat_completion(
    request_id: str,
    model: str,
    result: GenerationResult,
    reasoning: str,
    content: str,
    want_logprobs: bool,
    routing: dict[str, Any],
) -> dict[str, Any]:
    """A non-streamed `chat.completion` body (with our `routing` field)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": chat_logprobs(result) if want_logprobs else None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(result.prompt_tokens, result.completion_tokens),
        "routing": routing,
    }


def chat_chunk(
    request_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    routing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    chunk: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if routing is not None:
        chunk["routing"] = routing
    return chunk


def usage_chunk(
    request_id: str, model: str, created: int, obj: str, prompt: int, completion: int
) -> dict[str, Any]:
    """The final chunk with `usage` and no choices (`stream_options.include_usage`)."""
    return {
        "id": request_id,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt, completion),
    }


def completion(
    request_id: str, model: str, result: GenerationResult, routing: dict[str, Any]
) -> dict[str, Any]:
    """A non-streamed `text_completion` body."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}
        ],
        "usage": usage(result.prompt_tokens, result.completion_tokens),
        "routing": routing,
    }


def completion_chunk(
    request_id: str, model: str, created: int, text: str, finish_reason: str | None = None
) -> dict[str, Any]:
    """One streamed `text_completion` chunk."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
