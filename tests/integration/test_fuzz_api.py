"""Property-based fuzzing of the running API: no body may earn a 5xx, every 4xx is an OpenAI error.

Bodies come from the request models' JSON schemas at run time (tests/support/fuzz_bodies.py), so
fields added to the protocol are fuzzed without changes here; each valid body is also mutated
(fields dropped, retyped, added; containers deepened; bytes cut or corrupted), and every image
shape the fuzzer knows is sent in an otherwise valid chat to every model name. They go to the
`served` demo app over real HTTP, a few at a time, each answered within a deadline (a hang fails).
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from deployments.openai.protocol import ChatCompletionRequest, CompletionRequest
from tests.support.fuzz_bodies import IMAGE_URLS, draw, model_body_strategy, mutate, tame

pytestmark = pytest.mark.integration

CHAT_DRAWS = 150
COMPLETION_DRAWS = 100
MUTATIONS_PER_BODY = 7  # (150 + 100) x (1 + 7) = 2,000 bodies
CONCURRENCY = 8
DEADLINE_S = 60


def fuzz_cases(served_names: list[str]) -> list[tuple[str, bytes]]:
    """(path, raw body) pairs: schema-valid bodies tamed to one token, and mutations of each."""
    rng = random.Random(11)
    cases = []
    for path, model_cls, count in (
        ("/chat/completions", ChatCompletionRequest, CHAT_DRAWS),
        ("/completions", CompletionRequest, COMPLETION_DRAWS),
    ):
        for body in draw(model_body_strategy(model_cls), count):
            body = tame(body, served_names, rng)
            cases.append((path, json.dumps(body).encode()))
            cases.extend((path, mutate(body, rng)) for _ in range(MUTATIONS_PER_BODY))
    # Every image shape and encoding in an otherwise valid chat, for every name: generated bodies
    # are seldom valid enough elsewhere for their image to reach a model's decode and processor.
    for url in IMAGE_URLS:
        for name in served_names:
            image = {"type": "image_url", "image_url": {"url": url}}
            body = {
                "model": name,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "what"}, image]}],
            }
            cases.append(("/chat/completions", json.dumps({**body, "max_tokens": 1}).encode()))
    return cases


def problem(status: int, content: bytes, streamed: bool) -> str | None:
    """What is wrong with one answer, or None."""
    if status >= 500:
        return f"HTTP {status}"
    if status >= 400:
        try:
            error = json.loads(content)["error"]
        except (ValueError, KeyError, TypeError):
            return f"HTTP {status} without an OpenAI error body"
        if not isinstance(error.get("message"), str) or not isinstance(error.get("type"), str):
            return f"HTTP {status} error body lacks message/type"
        if "param" not in error or "code" not in error:
            return f"HTTP {status} error body lacks param/code"
        return None
    if streamed:
        for line in content.decode().splitlines():
            if line.startswith("data: {") and '"error"' in line:
                error = json.loads(line[6:]).get("error")
                if error and error.get("type") == "server_error":
                    return f"in-band server error: {error.get('message')}"
    return None


async def post_all(base_url: str, cases: list[tuple[str, bytes]]) -> list[tuple[str, bytes, str]]:
    import httpx

    failures = []
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=DEADLINE_S) as http:

        async def one(path: str, raw: bytes) -> None:
            async with semaphore:
                try:
                    response = await http.post(
                        path, content=raw, headers={"content-type": "application/json"}
                    )
                except httpx.TimeoutException:
                    failures.append((path, raw, f"no answer within {DEADLINE_S} s"))
                    return
                streamed = response.headers.get("content-type", "").startswith("text/event-stream")
                issue = problem(response.status_code, response.content, streamed)
                if issue:
                    failures.append((path, raw, issue + ": " + response.text[:300]))

        await asyncio.gather(*(one(path, raw) for path, raw in cases))
    return failures


def test_fuzzed_bodies_never_earn_a_5xx(served, client):
    import httpx

    names = [m.public_name for m in served.config.enabled_models()] + ["auto"]
    cases = fuzz_cases(names)
    assert len(cases) >= 2000
    failures = asyncio.run(post_all(served.base_url, cases))
    assert not failures, f"{len(failures)} of {len(cases)} bodies failed; first: {failures[:3]}"
    # The replica is alive and serving afterwards.
    health = httpx.get(served.base_url.removesuffix("/v1") + "/healthz", timeout=30)
    assert health.status_code == 200
    answer = client.chat.completions.create(
        model="qwen3.5-0.8b", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
