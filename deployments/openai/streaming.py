"""Server-sent event streams for chat and text completions, framed exactly as OpenAI frames them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.responses import StreamingResponse

from deployments.engines.base import GenerationDelta
from deployments.metrics import ServingMetrics
from deployments.openai import response_bodies
from deployments.openai.choices import ChatChoiceFramer, completion_logprobs
from deployments.openai.dispatch import OpenStream
from deployments.openai.errors import to_openai_error

if TYPE_CHECKING:
    from deployments.shadow.stream import StreamTap


async def _deltas(
    stream: OpenStream, metrics: ServingMetrics | None, first_of_request: bool = True
) -> AsyncIterator[GenerationDelta]:
    if metrics and first_of_request:
        metrics.record_first_token(
            stream.route.model.public_name, asyncio.get_running_loop().time() - stream.started
        )
    yield stream.first
    async for delta in stream.rest:
        yield delta


async def _merged(
    streams: list[OpenStream], metrics: ServingMetrics | None
) -> AsyncIterator[tuple[int, GenerationDelta]]:
    """(choice index, delta) from every sample's stream, in arrival order (`n` > 1 interleaves)."""
    if len(streams) == 1:
        async for delta in _deltas(streams[0], metrics):
            yield 0, delta
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, stream: OpenStream) -> None:
        try:
            async for delta in _deltas(stream, metrics, first_of_request=index == 0):
                await queue.put((index, delta))
        except Exception as error:  # handed to the consumer, which reports it in-band
            await queue.put((index, error))
        await queue.put((index, done))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is done:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


def _closing_events(
    request_id: str,
    name: str,
    created: int,
    fingerprint: str,
    obj: str,
    lasts: dict[int, GenerationDelta],
    include_usage: bool,
    metrics: ServingMetrics | None,
) -> list[bytes]:
    """Token metrics, then the usage chunk (when asked for) and `[DONE]`.

    With `n` samples the prompt is counted once and completion tokens are summed, as OpenAI does.
    """
    events = []
    if lasts:
        prompt = next(iter(lasts.values())).prompt_tokens
        completion = sum(last.completion_tokens for last in lasts.values())
        if metrics:
            metrics.record_tokens(name, prompt, completion)
        if include_usage:
            events.append(
                response_bodies.sse(
                    response_bodies.usage_chunk(
                        request_id, name, created, fingerprint, obj, prompt, completion
                    )
                )
            )
    events.append(response_bodies.sse("[DONE]"))
    return events


async def chat_events(
    request_id: str,
    fingerprint: str,
    streams: list[OpenStream],
    framers: list[ChatChoiceFramer],
    include_usage: bool,
    metrics: ServingMetrics | None,
    retry_after_s: int,
    tap: StreamTap | None = None,
) -> AsyncIterator[bytes]:
    """`chat.completion.chunk` events: each choice's role first, then its reasoning/content/tool-call
    deltas (with logprobs when asked for), its finish reason, the usage chunk when asked for, and
    `[DONE]`. Errors after the status line go in-band.

    `tap` (a sampled `auto` request's shadow collector) sees choice 0's deltas as they pass and is
    finished after `[DONE]` was sent, unless the stream failed; it changes no event."""
    created = int(time.time())
    route = streams[0].route
    name = route.model.public_name
    for index in range(len(streams)):
        yield response_bodies.sse(
            response_bodies.chat_chunk(
                request_id,
                name,
                created,
                fingerprint,
                {"role": "assistant", "content": ""},
                routing=route.routing if index == 0 else None,
                index=index,
            )
        )
    lasts: dict[int, GenerationDelta] = {}
    try:
        async for index, delta in _merged(streams, metrics):
            lasts[index] = delta
            if tap is not None and index == 0:
                tap.feed(delta)
            for piece in framers[index].feed(delta.text, delta.token_logprobs, delta.finish_reason):
                yield response_bodies.sse(
                    response_bodies.chat_chunk(
                        request_id,
                        name,
                        created,
                        fingerprint,
                        piece.delta,
                        piece.finish_reason,
                        index=index,
                        logprobs=piece.logprobs,
                    )
                )
    except Exception as raw:  # the status line is sent already: report in-band, as vLLM does
        if tap is not None:
            tap.fail()
        yield response_bodies.sse(to_openai_error(raw, retry_after_s).body())
    for event in _closing_events(
        request_id, name, created, fingerprint, "chat.completion.chunk", lasts, include_usage, metrics
    ):
        yield event
    if tap is not None:  # reached only once `[DONE]` was sent: a client that left never gets here
        tap.finish()


async def completion_events(
    request_id: str,
    fingerprint: str,
    streams: list[OpenStream],
    top_logprobs: int | None,
    include_usage: bool,
    metrics: ServingMetrics | None,
    retry_after_s: int,
    tap: StreamTap | None = None,
) -> AsyncIterator[bytes]:
    """`text_completion` events (legacy logprobs per chunk when asked for), the usage chunk when
    asked for, and `[DONE]`; `tap` as in `chat_events`."""
    created = int(time.time())
    name = streams[0].route.model.public_name
    lasts: dict[int, GenerationDelta] = {}
    offsets = [0] * len(streams)
    try:
        async for index, delta in _merged(streams, metrics):
            lasts[index] = delta
            if tap is not None and index == 0:
                tap.feed(delta)
            if delta.text or delta.finish_reason is not None:
                logprobs = None
                if top_logprobs is not None:
                    logprobs = completion_logprobs(delta.token_logprobs or [], top_logprobs, offsets[index])
                offsets[index] += len(delta.text)
                yield response_bodies.sse(
                    response_bodies.completion_chunk(
                        request_id,
                        name,
                        created,
                        fingerprint,
                        delta.text,
                        delta.finish_reason,
                        index,
                        logprobs,
                    )
                )
    except Exception as raw:
        if tap is not None:
            tap.fail()
        yield response_bodies.sse(to_openai_error(raw, retry_after_s).body())
    for event in _closing_events(
        request_id, name, created, fingerprint, "text_completion", lasts, include_usage, metrics
    ):
        yield event
    if tap is not None:
        tap.finish()


class StreamGroup:
    """The `n` streams of one request, closed together (what `HeldStreamingResponse` holds)."""

    def __init__(self, streams: list[OpenStream]):
        self.streams = streams

    async def close(self) -> None:
        """Close every sample's stream (frees their slots, stops unfinished generation)."""
        for stream in self.streams:
            await stream.close()


class HeldStreamingResponse(StreamingResponse):
    """A streamed response that closes its model stream when sending ends, however it ends.

    The stream's admission slot is freed after its last byte, on a client disconnect (Serve cancels
    the request task) and even when the body never starts; the engine row is cancelled unless the
    model had finished.
    """

    def __init__(self, stream: OpenStream, content: AsyncIterator[bytes], **kwargs):
        super().__init__(content, **kwargs)
        self.stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            await self.stream.close()
