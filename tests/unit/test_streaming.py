"""SSE streaming: slow first token, disconnect mid-stream, error after the first token.

Each case runs the real `HeldStreamingResponse` over a scripted model transport and checks what the
client received, that the admission slot came back, and whether the model was stopped.
"""

import asyncio
import json

import pytest

from deployments.openai.streaming import HeldStreamingResponse, completion_events
from tests.support.model_clients import ScriptedClient
from tests.unit.test_dispatch import make_config, make_dispatcher, request

pytestmark = pytest.mark.unit

SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "headers": [],
    "asgi": {"spec_version": "2.4"},
}


def events_of(messages):
    """The `data:` payloads of the body messages an ASGI app sent."""
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]


async def receive_nothing():
    await asyncio.Event().wait()  # the client never sends more (its disconnect comes as a cancel)


async def open_response(client, max_ongoing=1):
    """A text-completion stream (the framing shared with chat: slot, in-band errors, [DONE])."""
    dispatcher, capacity = make_dispatcher(
        make_config(max_ongoing=max_ongoing), {"0.8b": client, "2b": client}
    )
    stream = await dispatcher.open_stream(dispatcher.choose("qwen3.5-0.8b"), request("cmpl-1"))
    events = completion_events("cmpl-1", "fp_test", [stream], None, True, None, 2)
    return HeldStreamingResponse(stream, events, media_type="text/event-stream"), capacity


def test_slow_first_token_then_a_whole_stream():
    async def main():
        gate = asyncio.Event()
        client = ScriptedClient(pieces=("Hel", "lo"), gate=gate)
        opening = asyncio.create_task(open_response(client))
        await client.arrived.wait()
        gate.set()
        response, capacity = await opening
        assert capacity.in_flight["0.8b"] == 1
        sent = []

        async def send(message):
            sent.append(message)

        await response(SCOPE, receive_nothing, send)
        return events_of(sent), capacity, client

    events, capacity, client = asyncio.run(main())
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == "Hello"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert events[-1] == "[DONE]"
    assert capacity.in_flight["0.8b"] == 0
    assert (client.finished, client.cut_short) == (1, 0)


def test_client_disconnect_mid_stream_frees_the_slot_and_stops_the_model():
    async def main():
        client = ScriptedClient(pieces=("a", "b", "c", "d"))
        response, capacity = await open_response(client)
        blocked = asyncio.Event()
        sent = []

        async def send(message):
            sent.append(message)
            if len(events_of(sent)) == 2:  # two deltas reached the client
                blocked.set()
                await asyncio.Event().wait()  # the socket stalls; then the client goes away

        task = asyncio.create_task(response(SCOPE, receive_nothing, send))
        await blocked.wait()
        assert capacity.in_flight["0.8b"] == 1
        task.cancel()  # what Serve does when the HTTP client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task
        return capacity, client

    capacity, client = asyncio.run(main())
    assert capacity.in_flight["0.8b"] == 0
    assert (client.finished, client.cut_short) == (0, 1)


def test_broken_pipe_mid_stream_frees_the_slot():
    from starlette.requests import ClientDisconnect

    async def main():
        client = ScriptedClient(pieces=("a", "b", "c"))
        response, capacity = await open_response(client)
        sent = []

        async def send(message):
            if message["type"] == "http.response.body" and sent:
                raise OSError("connection reset by peer")
            sent.append(message)

        with pytest.raises((ClientDisconnect, OSError)):
            await response(SCOPE, receive_nothing, send)
        return capacity, client

    capacity, client = asyncio.run(main())
    assert capacity.in_flight["0.8b"] == 0
    assert client.cut_short == 1


def test_response_never_sent_still_frees_the_slot():
    from starlette.requests import ClientDisconnect

    async def main():
        client = ScriptedClient()
        response, capacity = await open_response(client)

        async def send(message):
            raise OSError("gone before the status line")

        with pytest.raises((ClientDisconnect, OSError)):
            await response(SCOPE, receive_nothing, send)
        return capacity, client

    capacity, client = asyncio.run(main())
    assert capacity.in_flight["0.8b"] == 0
    assert client.cut_short == 1


def test_error_after_first_token_is_reported_in_band():
    from deployments.engines.base import EngineOverloadedError

    async def main():
        client = ScriptedClient(
            pieces=("a", "b"), error_after_first=EngineOverloadedError("engine queue full")
        )
        response, capacity = await open_response(client)
        sent = []

        async def send(message):
            sent.append(message)

        await response(SCOPE, receive_nothing, send)
        return events_of(sent), capacity, sent

    events, capacity, sent = asyncio.run(main())
    assert sent[0]["status"] == 200  # the status line went out before the failure
    errors = [json.loads(e)["error"] for e in events[:-1] if "error" in json.loads(e)]
    assert len(errors) == 1
    error = errors[0]
    assert error["code"] == "overloaded" and error["type"] == "rate_limit_error"
    assert events[-1] == "[DONE]"
    assert capacity.in_flight["0.8b"] == 0
