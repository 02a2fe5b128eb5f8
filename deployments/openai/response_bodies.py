"""OpenAI response bodies and SSE chunks, built as plain dicts (cheaper than models on the hot path).

Every body carries the fields OpenAI's API reference marks required (`refusal: null` on messages,
`logprobs: null` in choices when not asked for), plus our `routing` field. `fingerprint` is the served
model's `system_fingerprint` (a string: see `fingerprint.py`).
"""

from __future__ import annotations

import json
import time
from typing import Any


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


def chat_completion(
    request_id: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    routing: dict[str, Any],
    fingerprint: str,
) -> dict[str, Any]:
    """A non-streamed `chat.completion` body (with our `routing` field)."""
    return _final_body(
        "chat.completion", request_id, model, choices, prompt_tokens, completion_tokens, routing, fingerprint
    )


def chat_chunk(
    request_id: str,
    model: str,
    created: int,
    fingerprint: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    routing: dict[str, Any] | None = None,
    index: int = 0,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk` carrying one choice's delta."""
    chunk: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": index,
                "delta": delta,
                "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
    }
    if routing is not None:
        chunk["routing"] = routing
    return chunk


def usage_chunk(
    request_id: str, model: str, created: int, fingerprint: str, obj: str, prompt: int, completion: int
) -> dict[str, Any]:
    """The final chunk with `usage` and no choices (`stream_options.include_usage`)."""
    return {
        "id": request_id,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [],
        "usage": usage(prompt, completion),
    }


def completion(
    request_id: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    routing: dict[str, Any],
    fingerprint: str,
) -> dict[str, Any]:
    """A non-streamed `text_completion` body."""
    return _final_body(
        "text_completion", request_id, model, choices, prompt_tokens, completion_tokens, routing, fingerprint
    )


def _final_body(
    object_name: str,
    request_id: str,
    model: str,
    choices: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    routing: dict[str, Any],
    fingerprint: str,
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": object_name,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": fingerprint,
        "routing": routing,
    }


def completion_choice(
    index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One `choices[]` entry of a text completion (streamed or not)."""
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def completion_chunk(
    request_id: str,
    model: str,
    created: int,
    fingerprint: str,
    text: str,
    finish_reason: str | None = None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One streamed `text_completion` chunk."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [completion_choice(index, text, finish_reason, logprobs)],
    }
