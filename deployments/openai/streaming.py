"""Server-sent event streams for chat and text completions, framed exactly as OpenAI frames them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from deployments.engines.base import GenerationDelta
from deployments.metrics import ServingMetrics
from deployments.openai import responses
from deployments.openai.dispatch import OpenStream
from deployments.openai.errors import to_openai_error
from deployments.openai.reasoning import ReasoningSplitter


async def _deltas(stream: OpenStream, metrics: ServingMetrics | None) -> AsyncIterator[GenerationDelta]:
    if metrics:
        metrics.record_first_token(
            stream.route.model.public_name, asyncio.get_running_loop().time() - stream.started
        )
    yield stream.first
    async for delta in stream.rest:
        yield delta


def _closing_events(
    request_id: str,
    name: str,
    created: int,
    obj: str,
    last: GenerationDelta | None,
    include_usage: bool,
    metrics: ServingMetrics | None,
) -> list[bytes]:
    """Token metrics, then the usage chunk (when asked for) and `[DONE]`."""
    events = []
    if last is not None:
        if metrics:
            metrics.record_tokens(name, last.prompt_tokens, last.completion_tokens)
        if include_usage:
            events.append(
                responses.sse(
                    responses.usage_chunk(
                        request_id, name, created, obj, last.prompt_tokens, last.completion_tokens
                    )
                )
            )
    events.append(responses.sse("[DONE]"))
    return events


async def chat_events(
    request_id: str,
    stream: OpenStream,
    include_usage: bool,
    metrics: ServingMetrics | None,
    retry_after_s: int,
) -> AsyncIterator[bytes]:
    """`chat.completion.chunk` events: role first, then reasoning/content deltas, the finish reason,
    the usage chunk when asked for, and `[DONE]`. Errors after the status line go in-band."""
    created = int(time.time())
    name = stream.route.model.public_name
    splitter = ReasoningSplitter(stream.route.thinking_on)
    yield responses.sse(
        responses.chat_chunk(
            request_id, name, created, {"role": "assistant", "content": ""}, routing=stream.route.routing
        )
    )
    last = None
    try:
        async for delta in _deltas(stream, metrics):
            last = delta
            reasoning, content = splitter.feed(delta.text)
            if delta.finish_reason is not None:
                tail_reasoning, tail_content = splitter.flush()
                reasoning, content = reasoning + tail_reasoning, content + tail_content
            if reasoning:
                yield responses.sse(
                    responses.chat_chunk(request_id, name, created, {"reasoning_content": reasoning})
                )
            if content:
                yield responses.sse(responses.chat_chunk(request_id, name, created, {"content": content}))
            if delta.finish_reason is not None:
                yield responses.sse(responses.chat_chunk(request_id, name, created, {}, delta.finish_reason))
    except Exception as raw:  # the status line is sent already: report in-band, as vLLM does
        yield responses.sse(to_openai_error(raw, retry_after_s).body())
    for event in _closing_events(
        request_id, name, created, "chat.completion.chunk", last, include_usage, metrics
    ):
        yield event


async def completion_events(
    request_id: str,
    stream: OpenStream,
    include_usage: bool,
    metrics: ServingMetrics | None,
    retry_after_s: int,
) -> AsyncIterator[bytes]:
    """`text_completion` events, the usage chunk when asked for, and `[DONE]`."""
    created = int(time.time())
    name = stream.route.model.public_name
    last = None
    try:
        async for delta in _deltas(stream, metrics):
            last = delta
            if delta.text or delta.finish_reason is not None:
                yield responses.sse(
                    responses.completion_chunk(request_id, name, created, delta.text, delta.finish_reason)
                )
    except Exception as raw:
        yield responses.sse(to_openai_error(raw, retry_after_s).body())
    for event in _closing_events(request_id, name, created, "text_completion", last, include_usage, metrics):
        yield event
