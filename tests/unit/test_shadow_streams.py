"""Streamed `auto` requests are sampled for shadow answers too (deployments/shadow/stream.py).

The service runs over scripted model transports and a real shadow runner and label writer, called as
an ASGI app so each test sees exactly which events were sent, and when the runner got the answer.
"""

import asyncio
import hashlib
import json
import math
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from starlette.requests import Request

import deployments.openai.service as service_module
import deployments.openai.streaming as streaming_module
import deployments.shadow.runner as runner_module
from cluster.shadow_config import ShadowConfig
from deployments.engines.base import EngineOverloadedError, GenerationDelta
from deployments.object_store import ObjectStore
from deployments.openai.capacity import CapacityTracker
from deployments.openai.service import OpenAIService
from deployments.router import build_router
from deployments.shadow.runner import ShadowRunner
from deployments.shadow.writer import LabelWriter
from tests.support.model_clients import ScriptedClient
from tests.unit.test_dispatch import make_config
from tests.unit.test_streaming import events_of

pytestmark = pytest.mark.unit

CHAT = ("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "hi there"}]})
COMPLETION = ("/v1/completions", {"model": "auto", "prompt": "hi there"})


class Outcomes:
    """Stands in for `ServingMetrics`: the shadow outcomes counted, in order."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def record_shadow(self, size: str, outcome: str) -> None:
        self.seen.append((size, outcome))


class Setup:
    """The service (0.8b and 2b, scripted) with a shadow runner writing to `folder`."""

    def __init__(self, folder, routed: ScriptedClient | None = None, **shadow):
        config = make_config(max_ongoing=4)
        self.clients = {"0.8b": routed or ScriptedClient(), "2b": ScriptedClient(pieces=("Hi",))}
        self.capacity = CapacityTracker(config)
        self.outcomes = Outcomes()
        settings = ShadowConfig(**{"enabled": True, "sample_rate": 1.0, "output": str(folder), **shadow})
        writer = LabelWriter(str(folder), ObjectStore())
        self.runner = ShadowRunner(settings, self.clients, self.capacity, writer, self.outcomes)
        router = build_router(config.router, list(self.clients))
        self.service = OpenAIService(config, self.clients, router, capacity=self.capacity, shadow=self.runner)
        self.sent: list[dict] = []
        self.handed_at: list[int] = []  # how many events the client had when the runner got the answer
        after_stream = self.runner.after_stream

        def spy(*args):
            self.handed_at.append(len(events_of(self.sent)))
            after_stream(*args)

        self.runner.after_stream = spy

    async def call(self, path: str, body: dict, send=None) -> None:
        """POST `body` to `path` as an ASGI app; the messages sent go to `self.sent`."""
        data = json.dumps(body).encode()
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            "asgi": {"spec_version": "2.4"},
        }
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": data, "more_body": False}
            await asyncio.Event().wait()  # the client sends nothing more

        async def record(message):
            self.sent.append(message)

        response = await self.service.handle(Request(scope, receive))
        await response(scope, receive, send or record)

    async def finish(self) -> None:
        """Let the shadow work end, then write the label buffer."""
        await asyncio.gather(*list(self.runner.tasks))
        await self.service.close()


class TwoSamples(ScriptedClient):
    """`n` = 2: choice 0 answers "Hello world"; choice 1 answers other text, interleaved with it, and
    ends (or, with `fail`, raises) only after choice 0's last delta."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.first_done = asyncio.Event()

    def stream(self, request):
        if not request.request_id.endswith("-1"):
            inner = super().stream(request)

            async def first():
                async for delta in inner:
                    yield delta
                self.first_done.set()

            return first()

        async def other():
            yield GenerationDelta("Other", 3, 1)
            await self.first_done.wait()
            if self.fail:
                raise EngineOverloadedError("the other sample failed")
            yield GenerationDelta(" text", 3, 2, "stop", [-3.0, -3.0], ["Other", " text"])

        return other()


def label_rows(folder):
    return [row for f in sorted(folder.rglob("*.parquet")) for row in pq.read_table(f).to_pylist()]


@pytest.mark.parametrize(
    ("path", "body"),
    [CHAT, COMPLETION, (CHAT[0], {**CHAT[1], "n": 2})],
    ids=["chat", "completion", "chat-n2"],
)
def test_a_sampled_stream_gives_one_record_after_its_last_event(tmp_path, path, body):
    setup = Setup(tmp_path, TwoSamples() if body.get("n") == 2 else None)

    async def main():
        await setup.call(path, {**body, "stream": True, "max_tokens": 4})
        await setup.finish()

    asyncio.run(main())
    events = events_of(setup.sent)
    assert events[-1] == "[DONE]" and not any('"error"' in e for e in events)
    assert dict(setup.sent[0]["headers"])[b"x-qwen-routed-model"] == b"qwen3.5-0.8b"
    # Handed over once, after the client had every event, `[DONE]` included.
    assert setup.handed_at == [len(events)]
    rows = label_rows(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    assert row["endpoint"] == ("chat" if "messages" in body else "completion")
    user, shadow = row["answers"]
    # The routed sample's answer only (choice 0), whole, with its per-token probabilities.
    assert user["source"] == "user" and user["size"] == "0.8b" and user["outcome"] == "answered"
    assert user["digest"] == hashlib.sha256(b"Hello world").hexdigest()
    assert user["finish_reason"] == "stop" and user["completion_tokens"] == 2
    assert user["prob_q10"] == pytest.approx(math.exp(-0.5))
    assert shadow["size"] == "2b" and shadow["outcome"] == "answered"
    assert ("", "sampled") in setup.outcomes.seen and ("", "recorded") in setup.outcomes.seen


@pytest.mark.parametrize(("path", "body"), [CHAT, COMPLETION], ids=["chat", "completion"])
def test_sampling_changes_no_byte_the_client_receives(tmp_path, monkeypatch, path, body):
    # Fixed ids and clock, so two runs of the same request can be compared byte for byte.
    monkeypatch.setattr(service_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="0" * 32)))
    monkeypatch.setattr(streaming_module, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))
    request = {**body, "stream": True, "max_tokens": 4, "stream_options": {"include_usage": True}}
    runs = {}
    for rate in (1.0, 0.0):
        setup = Setup(tmp_path / str(rate), sample_rate=rate)

        async def main(setup=setup):
            await setup.call(path, request)
            await setup.finish()

        asyncio.run(main())
        runs[rate] = setup
    sampled, unsampled = runs[1.0], runs[0.0]
    assert sampled.sent == unsampled.sent  # status, headers and every body byte
    assert len(label_rows(tmp_path / "1.0")) == 1 and not (tmp_path / "0.0").exists()


def test_unsampled_and_explicit_streams_do_no_shadow_work(tmp_path, monkeypatch):
    made = []

    class CountedTap(runner_module.StreamTap):
        def __init__(self, *args):
            made.append(args)
            super().__init__(*args)

    monkeypatch.setattr(runner_module, "StreamTap", CountedTap)
    setup = Setup(tmp_path, sample_rate=0.0)
    explicit = Setup(tmp_path)  # rate 1.0, but a named size is never sampled

    async def main():
        await setup.call(CHAT[0], {**CHAT[1], "stream": True})
        await explicit.call(CHAT[0], {**CHAT[1], "model": "qwen3.5-0.8b", "stream": True})
        await setup.finish()
        await explicit.finish()

    asyncio.run(main())
    assert events_of(setup.sent)[-1] == events_of(explicit.sent)[-1] == "[DONE]"
    assert made == [] and setup.outcomes.seen == explicit.outcomes.seen == []
    assert label_rows(tmp_path) == []


@pytest.mark.parametrize("n", [1, 2], ids=["routed-sample-fails", "other-sample-fails-after-it"])
def test_an_error_mid_stream_gives_no_record(tmp_path, n):
    if n == 1:
        routed = ScriptedClient(pieces=("a", "b"), error_after_first=EngineOverloadedError("full"))
    else:  # choice 0 ended whole, but the user's response still reported an error
        routed = TwoSamples(fail=True)
    setup = Setup(tmp_path, routed)

    async def main():
        await setup.call(CHAT[0], {**CHAT[1], "stream": True, "n": n})
        await setup.finish()

    asyncio.run(main())
    events = events_of(setup.sent)
    assert any('"error"' in e for e in events) and events[-1] == "[DONE]"
    assert setup.handed_at == [] and setup.outcomes.seen == [] and label_rows(tmp_path) == []


def test_a_client_that_leaves_mid_stream_gives_no_record(tmp_path):
    setup = Setup(tmp_path, ScriptedClient(pieces=("a", "b", "c", "d")))

    async def main():
        stalled = asyncio.Event()

        async def send(message):
            setup.sent.append(message)
            if len(events_of(setup.sent)) == 2:  # two events reached the client
                stalled.set()
                await asyncio.Event().wait()  # the socket stalls; then the client goes away

        task = asyncio.create_task(setup.call(CHAT[0], {**CHAT[1], "stream": True}, send))
        await stalled.wait()
        task.cancel()  # what Serve does when the HTTP client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task
        await setup.finish()

    asyncio.run(main())
    assert setup.handed_at == [] and setup.outcomes.seen == [] and label_rows(tmp_path) == []


def test_a_stream_that_ends_while_the_cluster_is_loaded_is_skipped(tmp_path):
    setup = Setup(tmp_path)

    async def main():
        # Users hold every 2b slot: the draw at the start sampled the request, but by its end the
        # cluster is loaded, so no shadow work starts (as for a non-streamed answer at that moment).
        setup.capacity.in_flight["2b"] = setup.capacity.limit("2b")
        await setup.call(CHAT[0], {**CHAT[1], "stream": True})
        setup.capacity.in_flight["2b"] = 0
        await setup.finish()

    asyncio.run(main())
    assert events_of(setup.sent)[-1] == "[DONE]"
    assert setup.outcomes.seen == [("", "skipped_busy")] and label_rows(tmp_path) == []
