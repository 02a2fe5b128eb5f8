"""`ModelServer.warm_up`: one short greedy generation through the engine before traffic."""

import asyncio

import pytest

from cluster.config import parse_config
from deployments.engines.base import GenerationDelta
from deployments.model_server import ModelServer

pytestmark = pytest.mark.unit


class RecordingEngine:
    """Answers every chat with one final delta and keeps the requests it saw."""

    def __init__(self):
        self.requests = []

    async def chat(self, request):
        self.requests.append(request)
        yield GenerationDelta(text="hi", finish_reason="length", prompt_tokens=3, completion_tokens=2)


def test_warm_up_runs_one_short_greedy_generation_through_the_engine():
    config = parse_config({"models": [{"size": "0.8b", "random_weights": True}]})
    engine = RecordingEngine()
    server = ModelServer(config.models[0], config.cache_dir, engine=engine)
    seconds = asyncio.run(server.warm_up())
    assert seconds >= 0
    [request] = engine.requests
    assert request.sampling.max_tokens == 2 and request.sampling.temperature == 0.0
    assert request.messages[0].content == "Hello"
