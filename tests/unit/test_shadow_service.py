"""Shadow answers through the OpenAI service without Serve: real demo engines in process."""

import asyncio
import json

import httpx
import pyarrow.parquet as pq
import pytest

from cluster.config import parse_config
from deployments.model_server import ModelServer
from deployments.openai.capacity import CapacityTracker
from deployments.openai.dispatch import LocalModelClient
from deployments.openai.service import OpenAIService
from deployments.router import build_router
from deployments.shadow.setup import LearningLoop
from tests.support.engines import demo_model_entries

pytestmark = pytest.mark.unit


def make_config(demo_cache, output, **shadow):
    config = parse_config(
        {
            "models": demo_model_entries(("0.8b", "2b", "9b")),
            "router": {
                "enabled": True,
                "scorer": "features",
                "shadow": {"enabled": True, "sample_rate": 1.0, "output": str(output), **shadow},
            },
            "serving": {"default_model": "auto"},
        }
    )
    config.cache_dir = demo_cache
    return config


def run(config, body):
    """Start engines and the service with its learning loop, call `body(http, learning, capacity)`,
    then close everything (which writes the label buffer)."""

    async def main():
        servers = {m.size: ModelServer(m, config.cache_dir) for m in config.enabled_models()}
        await asyncio.gather(*(s.start() for s in servers.values()))
        clients = {size: LocalModelClient(s) for size, s in servers.items()}
        router = build_router(config.router, [m.size for m in config.enabled_models()])
        capacity = CapacityTracker(config)
        learning = LearningLoop(config, clients, capacity, router)
        service = OpenAIService(config, clients, router, capacity=capacity, shadow=learning.shadow)

        async def app(scope, receive, send):
            from starlette.requests import Request

            response = await service.handle(Request(scope, receive))
            await response(scope, receive, send)

        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                result = await body(http, learning, capacity)
                await asyncio.gather(*list(learning.shadow.tasks))
                return result
        finally:
            await learning.close()
            await service.close()
            await asyncio.gather(*(s.shutdown() for s in servers.values()))

    return asyncio.run(main())


def chat(content, **extra):
    return {"model": "auto", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def label_rows(folder):
    files = sorted(folder.rglob("*.parquet"))
    return files, [row for f in files for row in pq.read_table(f).to_pylist()]


def sse_payloads(response):
    """The JSON events of a streamed response (without `[DONE]`)."""
    lines = response.text.splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]


def test_every_sampled_request_gives_one_record_without_text_and_is_not_billed(demo_cache, tmp_path):
    config = make_config(demo_cache, tmp_path / "labels")
    prompts = ["hi there", "what is 2 + 2?", "name a colour"]
    usage = {"stream": True, "stream_options": {"include_usage": True}}

    async def body(http, learning, capacity):
        responses = [await http.post("/v1/chat/completions", json=chat(p, temperature=0.0)) for p in prompts]
        streamed = [
            await http.post("/v1/chat/completions", json=chat("hello", **usage)),
            await http.post(
                "/v1/completions", json={"model": "auto", "prompt": "hello", "max_tokens": 4, **usage}
            ),
        ]
        explicit = await http.post("/v1/chat/completions", json=chat("hey", model="qwen3.5-2b"))
        return responses, streamed, explicit

    responses, streamed, explicit = run(config, body)
    assert all(r.status_code == 200 for r in [*responses, *streamed, explicit])
    files, rows = label_rows(tmp_path / "labels")
    assert len(files) == 1 and files[0].parent.name.startswith("hour=")
    # (response id, endpoint, the usage the user was billed) of every `auto` request, streamed or not.
    asked = [(r.json()["id"], "chat", r.json()["usage"]) for r in responses]
    asked += [
        (events[0]["id"], endpoint, events[-1]["usage"])
        for events, endpoint in zip([sse_payloads(r) for r in streamed], ["chat", "completion"], strict=True)
    ]
    routed = [r.headers["x-qwen-routed-model"] for r in [*responses, *streamed]]
    below_largest = [a for a, model in zip(asked, routed, strict=True) if model != "qwen3.5-9b"]
    # One record per sampled `auto` request (streamed ones too); explicit ones are not sampled.
    assert len(rows) == len(below_largest) and any(e == "completion" for _, e, _ in below_largest)
    for request_id, endpoint, billed in below_largest:
        (row,) = [row for row in rows if row["record_id"].startswith(request_id + "-")]
        assert row["endpoint"] == endpoint
        assert row["prompt_text"] is None and all(a["text"] is None for a in row["answers"])
        assert row["answers"][0]["source"] == "user" and row["answers"][0]["digest"]
        assert row["answers"][0]["prob_q10"] is not None  # a streamed answer's probabilities too
        assert {a["size"] for a in row["answers"][1:]} <= {"2b", "9b"}
        assert json.loads(row["estimates_json"]) and row["request_hash"]
        # The user's usage counts the user's answer only.
        assert billed["completion_tokens"] == row["answers"][0]["completion_tokens"]
    shadows = [a for row in rows for a in row["answers"][1:]]
    assert shadows and all(a["outcome"] in ("answered", "dropped_busy") for a in shadows)
    answered = [a for a in shadows if a["outcome"] == "answered"]
    assert answered and all(a["prob_q10"] is not None for a in answered)


def test_a_busy_size_drops_its_shadow_answer_and_reconfigure_turns_sampling_off(demo_cache, tmp_path):
    config = make_config(demo_cache, tmp_path / "labels", sizes="largest", store_text=True)

    async def body(http, learning, capacity):
        capacity.in_flight["9b"] = capacity.limit("9b")  # users hold every 9b slot: a loaded cluster
        loaded = await http.post("/v1/chat/completions", json=chat("hi there"))
        assert not learning.shadow.tasks  # not sampled at all
        capacity.in_flight["9b"] = 0
        learning.shadow.running["9b"] = 1  # another shadow answer runs on 9b: this one is dropped
        busy = await http.post("/v1/chat/completions", json=chat("hi there"))
        await asyncio.gather(*list(learning.shadow.tasks))
        learning.shadow.running["9b"] = 0
        learning.reconfigure({"shadow": {"enabled": False}})
        off = await http.post("/v1/chat/completions", json=chat("hi there"))
        return loaded, busy, off

    loaded, busy, off = run(config, body)
    assert loaded.status_code == busy.status_code == off.status_code == 200
    _, rows = label_rows(tmp_path / "labels")
    assert len(rows) == 1  # the first (loaded) and the last (off) requests were not sampled
    assert [a["outcome"] for a in rows[0]["answers"]] == ["answered", "dropped_busy"]
    assert rows[0]["prompt_text"] and rows[0]["answers"][0]["text"] is not None  # store_text on


def test_a_user_refusal_preempts_running_shadow_answers_and_pauses_sampling(demo_cache, tmp_path):
    config = make_config(demo_cache, tmp_path / "labels", sizes="largest")

    async def body(http, learning, capacity):
        first = await http.post(
            "/v1/chat/completions", json=chat("hi there", max_tokens=512, temperature=1.0)
        )
        for _ in range(200):  # the shadow answer has started on 9b
            if learning.shadow.generating:
                break
            await asyncio.sleep(0.01)
        learning.shadow.note_refusal()  # what the service calls on any 429
        await asyncio.gather(*list(learning.shadow.tasks))
        paused = await http.post("/v1/chat/completions", json=chat("hi there"))
        return first, paused, list(learning.shadow.tasks)

    first, paused, pending = run(config, body)
    assert first.status_code == paused.status_code == 200 and not pending
    _, rows = label_rows(tmp_path / "labels")
    assert len(rows) == 1  # the request during the pause was not sampled
    assert [a["outcome"] for a in rows[0]["answers"]] == ["answered", "preempted"]
