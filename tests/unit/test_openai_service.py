"""The OpenAI service without Serve: real demo engines in process, the real router, HTTP over ASGI."""

import asyncio
import json

import httpx
import pytest

from cluster.config import parse_config
from deployments.model_server import ModelServer
from deployments.openai.capacity import CapacityTracker
from deployments.openai.dispatch import LocalModelClient
from deployments.openai.service import OpenAIService
from deployments.router import build_router
from tests.support.engines import demo_model_entries

pytestmark = pytest.mark.unit

EASY = "hi there"
HARD = (
    "Prove step by step that there are infinitely many primes p such that p mod 4 = 3, then derive the "
    "asymptotic density of such primes and write a Python function that verifies it up to 10**6. "
    "Explain every step of the proof rigorously, with lemmas, and analyse the algorithm's complexity."
)


def make_config(demo_cache, **router):
    config = parse_config({
        "models": demo_model_entries(("0.8b", "2b", "4b", "9b")),
        "router": {"enabled": True, "scorer": "features", **router},
        "serving": {"default_model": "auto"},
    })
    config.cache_dir = demo_cache
    return config


class RefusingClient:
    """A size whose Serve queue is full: every call fails with Serve's back-pressure error."""

    def __init__(self):
        self.calls = 0

    async def generate(self, request):
        from ray.serve.exceptions import BackPressureError

        self.calls += 1
        raise BackPressureError(num_queued_requests=1, max_queued_requests=1)

    def stream(self, request):
        async def refuse():
            from ray.serve.exceptions import BackPressureError

            self.calls += 1
            raise BackPressureError(num_queued_requests=1, max_queued_requests=1)
            yield  # pragma: no cover

        return refuse()


def run_service(config, body, *, replace=None, capacity=None):
    """Start engines, call `body(client)` with an httpx client bound to the service, shut down."""

    async def main():
        servers = {m.size: ModelServer(m, config.cache_dir) for m in config.enabled_models()}
        await asyncio.gather(*(s.start() for s in servers.values()))
        clients = {size: LocalModelClient(s) for size, s in servers.items()}
        clients.update(replace or {})
        router = build_router(config.router, [m.size for m in config.enabled_models()])
        service = OpenAIService(config, clients, router, capacity=capacity)

        async def app(scope, receive, send):
            from starlette.requests import Request

            response = await service.handle(Request(scope, receive))
            await response(scope, receive, send)

        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
                return await body(http)
        finally:
            await service.close()
            await asyncio.gather(*(s.shutdown() for s in servers.values()))

    return asyncio.run(main())


def chat(content, model="auto", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def test_easy_and_hard_prompts_land_on_different_sizes(demo_cache):
    async def body(http):
        easy = await http.post("/v1/chat/completions", json=chat(EASY))
        hard = await http.post("/v1/chat/completions", json=chat(HARD))
        explicit = await http.post("/v1/chat/completions", json=chat(HARD, model="qwen3.5-0.8b"))
        return easy, hard, explicit

    easy, hard, explicit = run_service(make_config(demo_cache), body)
    assert easy.status_code == hard.status_code == 200
    sizes = ["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]
    assert sizes.index(easy.headers["x-qwen-routed-model"]) < sizes.index(hard.headers["x-qwen-routed-model"])
    assert float(easy.headers["x-qwen-difficulty"]) < float(hard.headers["x-qwen-difficulty"])
    assert hard.json()["routing"]["model"] == hard.headers["x-qwen-routed-model"]
    assert explicit.headers["x-qwen-routed-model"] == "qwen3.5-0.8b"
    assert explicit.headers["x-qwen-route-reason"] == "explicit"
    assert "x-qwen-difficulty" not in explicit.headers


def test_escalation_forced_by_config(demo_cache):
    # Every answer from random weights has a mean log-probability below 0: all escalate, once.
    config = make_config(demo_cache, escalation={"enabled": True, "min_mean_logprob": -0.0001})

    async def body(http):
        return await http.post("/v1/chat/completions", json=chat(EASY, temperature=0.0))

    response = run_service(config, body)
    routing = response.json()["routing"]
    assert routing["escalated_from"] == "qwen3.5-0.8b"
    assert routing["escalation_reason"] == "low_confidence"
    assert response.headers["x-qwen-routed-model"] == "qwen3.5-2b" == response.json()["model"]
    assert response.headers["x-qwen-escalated-from"] == "qwen3.5-0.8b"
    assert "escalated:low_confidence" in response.headers["x-qwen-route-reason"]


def test_scaled_to_zero_size_is_skipped(demo_cache):
    config = make_config(demo_cache)

    async def no_small_replica():
        return {"0.8b": 0, "2b": 1, "4b": 1, "9b": 1}

    async def body(http):
        await capacity.refresh()
        return await http.post("/v1/chat/completions", json=chat(EASY))

    capacity = CapacityTracker(config, no_small_replica)
    response = run_service(config, body, capacity=capacity)
    assert response.headers["x-qwen-routed-model"] == "qwen3.5-2b"
    assert "capacity_up:no_replica" in response.headers["x-qwen-route-reason"]


def test_full_queue_reroutes_auto_and_429s_explicit(demo_cache):
    config = make_config(demo_cache)
    refusing = RefusingClient()

    async def body(http):
        routed = await http.post("/v1/chat/completions", json=chat(EASY))
        streamed = await http.post("/v1/chat/completions", json=chat(EASY, stream=True))
        explicit = await http.post("/v1/chat/completions", json=chat(EASY, model="qwen3.5-0.8b"))
        return routed, streamed, explicit

    routed, streamed, explicit = run_service(config, body, replace={"0.8b": refusing})
    assert routed.status_code == 200 and routed.headers["x-qwen-routed-model"] == "qwen3.5-2b"
    assert "queue_full" in routed.headers["x-qwen-route-reason"]
    assert streamed.status_code == 200 and streamed.headers["x-qwen-routed-model"] == "qwen3.5-2b"
    assert explicit.status_code == 429 and explicit.headers["retry-after"] == "1"
    assert explicit.json()["error"]["code"] == "overloaded"
    assert refusing.calls == 3


def test_router_off_sends_auto_to_fallback(demo_cache):
    config = make_config(demo_cache)
    config.router.enabled = False
    config.router.fallback_size = "4b"

    async def body(http):
        return await http.post("/v1/chat/completions", json=chat(HARD))

    response = run_service(config, body)
    assert response.headers["x-qwen-routed-model"] == "qwen3.5-4b"


def test_completions_and_models(demo_cache):
    async def body(http):
        models = await http.get("/v1/models")
        completion = await http.post("/v1/completions", json={"model": "auto", "prompt": "Once", "max_tokens": 3})
        missing = await http.get("/v1/models/qwen3.5-1b")
        return models, completion, missing

    models, completion, missing = run_service(make_config(demo_cache), body)
    assert [m["id"] for m in models.json()["data"]][-1] == "auto"
    assert completion.json()["object"] == "text_completion" and "x-qwen-routed-model" in completion.headers
    assert missing.status_code == 404 and json.loads(missing.text)["error"]["param"] == "model"


class UnusedClient:
    """A size's client that must not be called."""

    def __init__(self):
        self.calls = 0

    async def generate(self, request):  # pragma: no cover - a call is the failure
        self.calls += 1
        raise AssertionError("the model was called")

    def stream(self, request):  # pragma: no cover
        self.calls += 1
        raise AssertionError("the model was called")


def test_a_full_named_size_refuses_before_validation(demo_cache):
    """A burst's refusals skip validation, message conversion and image fetching; requests for other
    sizes and `auto` ones are validated as before."""
    config = make_config(demo_cache)
    clients = {size: UnusedClient() for size in ("0.8b", "2b", "4b", "9b")}
    capacity = CapacityTracker(config)
    while True:  # fill 0.8b's slots
        try:
            capacity.admit("0.8b")
        except Exception:
            break
    service = OpenAIService(config, clients, build_router(config.router, list(clients)), capacity=capacity)

    async def app(scope, receive, send):
        from starlette.requests import Request

        response = await service.handle(Request(scope, receive))
        await response(scope, receive, send)

    # Invalid (a string temperature) and carrying an image URL that could not be fetched.
    bad = chat([{"type": "image_url", "image_url": {"url": "https://192.0.2.1/x.png"}}], temperature="hot")

    async def body():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            full = await http.post("/v1/chat/completions", json={**bad, "model": "qwen3.5-0.8b"})
            completion = await http.post(
                "/v1/completions", json={"model": "qwen3.5-0.8b", "prompt": "x", "max_tokens": "many"}
            )
            other = await http.post("/v1/chat/completions", json={**bad, "model": "qwen3.5-2b"})
            auto = await http.post("/v1/chat/completions", json=bad)
        await service.close()
        return full, completion, other, auto

    full, completion, other, auto = asyncio.run(body())
    assert full.status_code == completion.status_code == 429
    assert full.json()["error"]["code"] == "overloaded" and full.headers["retry-after"]
    assert other.status_code == auto.status_code == 400
    assert other.json()["error"]["param"] == "temperature"
    assert all(client.calls == 0 for client in clients.values())


def test_answer_logprobs_are_computed_only_for_answers_escalation_reads(demo_cache, monkeypatch):
    seen: list[bool] = []
    generate, stream = LocalModelClient.generate, LocalModelClient.stream

    async def recording_generate(self, request):
        seen.append(request.answer_logprobs)
        return await generate(self, request)

    def recording_stream(self, request):
        seen.append(request.answer_logprobs)
        return stream(self, request)

    monkeypatch.setattr(LocalModelClient, "generate", recording_generate)
    monkeypatch.setattr(LocalModelClient, "stream", recording_stream)

    def ask(model):
        async def body(http):
            for response in (
                await http.post("/v1/chat/completions", json=chat(EASY, model=model)),
                await http.post("/v1/chat/completions", json=chat(EASY, model=model, stream=True)),
                await http.post("/v1/completions", json={"model": model, "prompt": EASY, "max_tokens": 4}),
            ):
                assert response.status_code == 200

        return body

    # Nothing reads them by default, named size or `auto`: the engines skip them, as `vllm serve` does.
    for model in ("auto", "qwen3.5-0.8b"):
        seen.clear()
        run_service(make_config(demo_cache), ask(model))
        assert seen == [False, False, False]
    escalating = make_config(demo_cache, escalation={"enabled": True})
    seen.clear()
    run_service(escalating, ask("auto"))
    assert len(seen) >= 3 and all(seen)  # escalation reads routed answers' confidence
    seen.clear()
    run_service(escalating, ask("qwen3.5-0.8b"))
    assert seen == [False, False, False]  # a named size is never escalated
