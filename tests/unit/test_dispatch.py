"""`Dispatcher`: explicit routes, admission slots held to the last byte, lost-replica retries, deadlines.

The model transport is scripted (tests/support/model_clients.py); every wait is an event.
"""

import asyncio

import pytest

from cluster.config import parse_config
from deployments.engines.base import EngineOverloadedError, GenerationRequest, SamplingParams
from deployments.openai.capacity import CapacityTracker
from deployments.openai.dispatch import Dispatcher
from deployments.openai.protocol import OpenAIError
from deployments.router import build_router
from tests.support.model_clients import ScriptedClient, replica_died

pytestmark = pytest.mark.unit


def make_config(max_ongoing=2, max_queued=4, **ingress):
    return parse_config(
        {
            "models": [
                {
                    "size": size,
                    "random_weights": True,
                    "deployment": {
                        "num_replicas": 1,
                        "max_ongoing_requests": max_ongoing,
                        "max_queued_requests": max_queued,
                    },
                }
                for size in ("0.8b", "2b")
            ],
            "router": {"enabled": True, "scorer": "features"},
            # No bound on the wait in line unless a test sets one: these tests must not race a clock.
            "serving": {"ingress": {"retry_after_s": 3, "max_queue_wait_s": None, **ingress}},
        }
    )


def make_dispatcher(config, clients, ready=None):
    capacity = CapacityTracker(config)
    capacity.ready = ready
    router = build_router(config.router, [m.size for m in config.enabled_models()])
    return Dispatcher(config, clients, router, capacity), capacity


def request(request_id="req-1"):
    from deployments.engines.base import ChatMessage

    return GenerationRequest(
        request_id=request_id,
        sampling=SamplingParams(max_tokens=4),
        messages=[ChatMessage(role="user", content="hi")],
    )


def test_explicit_model_and_unknown_model():
    config = make_config()
    dispatcher, _ = make_dispatcher(config, {"0.8b": ScriptedClient(), "2b": ScriptedClient()})
    route = dispatcher.choose("qwen3.5-2b")
    assert route.model.size == "2b"
    assert route.routing["reason"] == "explicit"
    with pytest.raises(OpenAIError) as missing:
        dispatcher.choose("gpt-4")
    assert (missing.value.status_code, missing.value.param) == (404, "model")
    assert "qwen3.5-0.8b" in missing.value.message


def test_generate_holds_a_slot_while_it_runs_and_refuses_past_the_limit():
    async def main():
        gate = asyncio.Event()
        client = ScriptedClient(gate=gate)
        config = make_config(max_ongoing=2, max_queue_wait_s=0)  # no line: 429 as soon as the slots are taken
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        first = asyncio.create_task(dispatcher.generate(route, request("a")))
        second = asyncio.create_task(dispatcher.generate(route, request("b")))
        while client.waiting < 2:
            await client.arrived.wait()
            client.arrived.clear()
        assert capacity.in_flight["0.8b"] == 2
        with pytest.raises(EngineOverloadedError):  # the third is refused before any call
            await dispatcher.generate(route, request("c"))
        assert [r.request_id for r in client.requests] == ["a", "b"]
        gate.set()
        results = await asyncio.gather(first, second)
        assert [r.text for r, _ in results] == ["Hello world"] * 2
        assert capacity.in_flight["0.8b"] == 0
        assert capacity.peak_in_flight["0.8b"] == 2

    asyncio.run(main())


def test_full_size_holds_requests_in_line_first_come_first_served_then_refuses():
    async def main():
        gate = asyncio.Event()
        client = ScriptedClient(gate=gate)
        config = make_config(max_ongoing=1, max_queued=2)
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        running = asyncio.create_task(dispatcher.generate(route, request("a")))
        await client.arrived.wait()
        waiting = [asyncio.create_task(dispatcher.generate(route, request(name))) for name in "bc"]
        streamed = asyncio.create_task(dispatcher.open_stream(route, request("d")))
        with pytest.raises(EngineOverloadedError):  # the line (2) is full: refused at once
            await streamed
        assert len(capacity.waiting["0.8b"]) == 2 and capacity.in_flight["0.8b"] == 1
        gate.set()
        await asyncio.gather(running, *waiting)
        assert [r.request_id for r in client.requests] == ["a", "b", "c"]  # in order of arrival
        assert capacity.peak_in_flight["0.8b"] == 1  # the line never passed the slot limit
        assert capacity.in_flight["0.8b"] == 0 and not capacity.waiting["0.8b"]

    asyncio.run(main())


def test_waiting_request_out_of_time_leaves_the_line():
    async def main():
        config = make_config(max_ongoing=1, max_queued=4, request_timeout_s=0.05)
        dispatcher, capacity = make_dispatcher(config, {"0.8b": ScriptedClient(), "2b": ScriptedClient()})
        taken = capacity.admit("0.8b")  # the only slot, held by a request that never ends
        with pytest.raises(asyncio.TimeoutError):  # the deadline covers the wait for a slot
            await dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request("late"))
        assert not capacity.waiting["0.8b"]
        taken.release()
        assert capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_wait_in_line_is_bounded_by_max_queue_wait_then_429():
    async def main():
        config = make_config(max_ongoing=1, max_queued=4, max_queue_wait_s=0.02)
        client = ScriptedClient()
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        taken = capacity.admit("0.8b")  # the only slot, held past the wait bound
        for _ in range(100):  # slots came back at 100/s a moment ago: one place in line fits 0.02 s
            capacity.note_release("0.8b")
        with pytest.raises(EngineOverloadedError, match="no free slot within 0.02 s"):
            await asyncio.wait_for(dispatcher.open_stream(route, request("streamed")), 5)
        with pytest.raises(EngineOverloadedError, match="no free slot within"):
            await asyncio.wait_for(dispatcher.generate(route, request("plain")), 5)
        assert not capacity.waiting["0.8b"] and capacity.in_flight["0.8b"] == 1
        assert client.requests == []  # refused requests never reached the model
        taken.release()
        result, _ = await dispatcher.generate(route, request("after"))  # the slot is usable again
        assert result.text == "Hello world" and capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_line_refuses_at_once_what_cannot_drain_within_the_bound():
    async def main():
        config = make_config(max_ongoing=1, max_queued=64, max_queue_wait_s=1.5)
        client = ScriptedClient()
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        taken = capacity.admit("0.8b")
        # No slot came back in the last second (a burst onto a quiet size): refused at once, not
        # after 1.5 s, although the line has room.
        with pytest.raises(EngineOverloadedError, match="more than frees up within 1.5 s"):
            await asyncio.wait_for(dispatcher.generate(route, request("burst")), 1)
        capacity.note_release("0.8b")  # one per second: one place in line fits 1.5 s, a second does not
        waiting = asyncio.create_task(dispatcher.generate(route, request("first in line")))
        for _ in range(100):
            if capacity.waiting["0.8b"]:
                break
            await asyncio.sleep(0)
        with pytest.raises(EngineOverloadedError, match="more than frees up"):
            await asyncio.wait_for(dispatcher.generate(route, request("second in line")), 1)
        taken.release()
        result, _ = await waiting
        assert result.text == "Hello world" and [r.request_id for r in client.requests] == ["first in line"]

    asyncio.run(main())


def test_waiting_request_cancelled_leaves_the_line_and_the_next_gets_the_slot():
    async def main():
        client = ScriptedClient()
        dispatcher, capacity = make_dispatcher(make_config(max_ongoing=1, max_queued=4), {"0.8b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        taken = capacity.admit("0.8b")
        gone = asyncio.create_task(dispatcher.generate(route, request("gone")))
        next_in_line = asyncio.create_task(dispatcher.open_stream(route, request("next")))
        for _ in range(100):  # let both tasks reach the line (there is no event to await there)
            if len(capacity.waiting["0.8b"]) == 2:
                break
            await asyncio.sleep(0)
        assert len(capacity.waiting["0.8b"]) == 2
        gone.cancel()  # the client disconnected while waiting
        with pytest.raises(asyncio.CancelledError):
            await gone
        taken.release()  # hands the slot to the one still waiting
        stream = await next_in_line
        assert [stream.first.text] + [d.text async for d in stream.rest] == ["Hello", " world"]
        assert [r.request_id for r in client.requests] == ["next"]
        assert capacity.in_flight["0.8b"] == 0 and not capacity.waiting["0.8b"]

    asyncio.run(main())


def test_more_ready_replicas_let_those_waiting_in():
    async def main():
        client = ScriptedClient()
        replicas = {"0.8b": 1, "2b": 1}

        async def count():
            return dict(replicas)

        config = make_config(max_ongoing=1, max_queued=4)
        capacity = CapacityTracker(config, counter=count)
        await capacity.refresh()
        router = build_router(config.router, ["0.8b", "2b"])
        dispatcher = Dispatcher(config, {"0.8b": client}, router, capacity)
        taken = capacity.admit("0.8b")
        waiting = asyncio.create_task(dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request("w")))
        for _ in range(100):
            if capacity.waiting["0.8b"]:
                break
            await asyncio.sleep(0)
        replicas["0.8b"] = 2  # the autoscaler added a replica
        await capacity.refresh()
        result, _ = await waiting
        assert result.text == "Hello world" and capacity.in_flight["0.8b"] == 1
        taken.release()

    asyncio.run(main())


def test_generate_retries_once_when_the_replica_dies():
    async def main():
        client = ScriptedClient(fail_first=[replica_died()])
        dispatcher, capacity = make_dispatcher(make_config(), {"0.8b": client, "2b": client})
        result, route = await dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request("r"))
        assert result.text == "Hello world"
        assert [r.request_id for r in client.requests] == ["r", "r-retry"]
        assert capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_generate_twice_lost_is_a_retryable_503():
    async def main():
        client = ScriptedClient(fail_first=[replica_died(), replica_died()])
        dispatcher, capacity = make_dispatcher(make_config(), {"0.8b": client, "2b": client})
        with pytest.raises(OpenAIError) as lost:
            await dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request())
        assert lost.value.status_code == 503
        assert lost.value.headers == {"Retry-After": "3"}
        assert len(client.requests) == 2  # one retry, not more
        assert capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_request_errors_are_not_retried():
    from deployments.engines.base import PromptTooLongError

    async def main():
        client = ScriptedClient(fail_first=[PromptTooLongError("prompt of 5000 tokens exceeds 2048")])
        dispatcher, _ = make_dispatcher(make_config(), {"0.8b": client, "2b": client})
        with pytest.raises(PromptTooLongError):
            await dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request())
        assert len(client.requests) == 1

    asyncio.run(main())


def test_stream_counts_from_admission_not_from_its_first_token():
    # The bypass this guards against: streams waiting for a first token used to hold no slot.
    async def main():
        gate = asyncio.Event()
        client = ScriptedClient(gate=gate)
        config = make_config(max_ongoing=1, max_queue_wait_s=0)
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client})
        route = dispatcher.choose("qwen3.5-0.8b")
        opening = asyncio.create_task(dispatcher.open_stream(route, request("s1")))
        await client.arrived.wait()
        assert capacity.in_flight["0.8b"] == 1
        with pytest.raises(EngineOverloadedError):
            await dispatcher.open_stream(route, request("s2"))
        gate.set()
        stream = await opening
        assert capacity.in_flight["0.8b"] == 1  # still held after the first token
        texts = [stream.first.text] + [d.text async for d in stream.rest]
        assert texts == ["Hello", " world"]
        assert capacity.in_flight["0.8b"] == 0  # freed after the last delta
        await stream.close()  # idempotent
        assert capacity.in_flight["0.8b"] == 0
        assert client.finished == 1 and client.cut_short == 0

    asyncio.run(main())


def test_cancel_while_waiting_for_first_token_frees_the_slot_and_stops_the_model():
    async def main():
        client = ScriptedClient(gate=asyncio.Event())
        dispatcher, capacity = make_dispatcher(make_config(max_ongoing=1), {"0.8b": client, "2b": client})
        opening = asyncio.create_task(dispatcher.open_stream(dispatcher.choose("qwen3.5-0.8b"), request()))
        await client.arrived.wait()
        opening.cancel()  # what Serve does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert capacity.in_flight["0.8b"] == 0
        assert client.cut_short == 1

    asyncio.run(main())


def test_stream_closed_early_frees_the_slot_and_stops_the_model():
    async def main():
        client = ScriptedClient(pieces=("a", "b", "c"))
        dispatcher, capacity = make_dispatcher(make_config(max_ongoing=1), {"0.8b": client, "2b": client})
        stream = await dispatcher.open_stream(dispatcher.choose("qwen3.5-0.8b"), request())
        await stream.close()  # the response ended before the model did (client gone)
        assert capacity.in_flight["0.8b"] == 0
        assert client.cut_short == 1

    asyncio.run(main())


def test_stream_replica_lost_before_first_token_is_retried():
    async def main():
        client = ScriptedClient(fail_first=[replica_died()])
        dispatcher, capacity = make_dispatcher(make_config(), {"0.8b": client, "2b": client})
        stream = await dispatcher.open_stream(dispatcher.choose("qwen3.5-0.8b"), request("s"))
        assert stream.first.text == "Hello"
        assert [r.request_id for r in client.requests] == ["s", "s-retry"]
        await stream.close()
        assert capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_size_without_ready_replica_gets_the_cold_start_deadline():
    config = make_config(request_timeout_s=10, cold_start_timeout_s=50)
    dispatcher, _ = make_dispatcher(config, {}, ready={"0.8b": 0, "2b": 1})
    assert dispatcher._deadline("0.8b") == 60
    assert dispatcher._deadline("2b") == 10


def test_cold_size_admits_up_to_its_queue_not_its_replicas():
    # Scaled to zero: requests are held (queued for the scale-up), up to max_queued_requests.
    async def main():
        gate = asyncio.Event()
        client = ScriptedClient(gate=gate)
        config = make_config(max_ongoing=1, max_queued=3)
        dispatcher, capacity = make_dispatcher(
            config, {"0.8b": client, "2b": client}, ready={"0.8b": 0, "2b": 1}
        )
        route = dispatcher.choose("qwen3.5-0.8b")
        held = [asyncio.create_task(dispatcher.generate(route, request(f"c{i}"))) for i in range(3)]
        while client.waiting < 3:
            await client.arrived.wait()
            client.arrived.clear()
        with pytest.raises(EngineOverloadedError):
            await dispatcher.generate(route, request("c3"))
        gate.set()
        assert len(await asyncio.gather(*held)) == 3
        assert capacity.in_flight["0.8b"] == 0

    asyncio.run(main())


def test_size_that_never_comes_up_is_a_retryable_503():
    async def main():
        client = ScriptedClient(gate=asyncio.Event())  # the first token never comes
        config = make_config(request_timeout_s=0.05, cold_start_timeout_s=0.05)
        dispatcher, capacity = make_dispatcher(config, {"0.8b": client, "2b": client}, ready={"0.8b": 0, "2b": 1})
        with pytest.raises(OpenAIError) as unavailable:
            await dispatcher.generate(dispatcher.choose("qwen3.5-0.8b"), request())
        assert (unavailable.value.status_code, unavailable.value.code) == (503, "model_unavailable")
        assert unavailable.value.headers == {"Retry-After": "3"}
        with pytest.raises(asyncio.TimeoutError):  # a ready size that is just slow: a time-out (504)
            await dispatcher.generate(dispatcher.choose("qwen3.5-2b"), request())
        assert capacity.in_flight == {"0.8b": 0, "2b": 0}

    asyncio.run(main())
