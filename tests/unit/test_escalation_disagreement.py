"""Escalation on disagreement between two cheap samples of a verifiable answer (real demo engines)."""

import asyncio

import pytest

from cluster.config import parse_config
from cluster.router_config import EscalationConfig, RouterConfig
from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
from deployments.model_server import ModelServer
from deployments.openai.capacity import CapacityTracker
from deployments.openai.dispatch import Dispatcher, LocalModelClient
from deployments.router import RouteDecision, Router, build_router
from tests.support.engines import demo_model_entries

pytestmark = pytest.mark.unit


def decision(size="0.8b"):
    return RouteDecision(size=size, difficulty=0.2, reason="quality", thinking=False, scorer="features")


def test_a_second_sample_is_wanted_only_for_verifiable_answers_below_the_largest_size():
    on = Router(
        RouterConfig(
            enabled=True, scorer="features", escalation=EscalationConfig(enabled=True, disagreement=True)
        ),
        ["0.8b", "2b"],
    )
    off = Router(
        RouterConfig(enabled=True, scorer="features", escalation=EscalationConfig(enabled=True)),
        ["0.8b", "2b"],
    )
    assert on.second_sample_kind(decision(), "42") == "numeric"
    assert on.second_sample_kind(decision(), "A long essay " * 20) is None
    assert on.second_sample_kind(decision("2b"), "42") is None  # nothing larger served
    assert off.second_sample_kind(decision(), "42") is None
    assert on.samples_disagree("numeric", "#### 42", "42.0") is False
    assert on.samples_disagree("choice", "B", "(C)") is True


def test_two_disagreeing_samples_escalate_one_size_up(demo_cache):
    config = parse_config(
        {
            "models": demo_model_entries(("0.8b", "2b")),
            "router": {
                "enabled": True,
                "scorer": "features",
                # The quantile rule off, so only disagreement can escalate here.
                "escalation": {"enabled": True, "disagreement": True, "min_token_prob": None},
            },
        }
    )
    config.cache_dir = demo_cache

    async def main():
        servers = {m.size: ModelServer(m, config.cache_dir) for m in config.enabled_models()}
        await asyncio.gather(*(s.start() for s in servers.values()))
        try:
            clients = {size: LocalModelClient(s) for size, s in servers.items()}
            router = build_router(config.router, ["0.8b", "2b"])
            dispatcher = Dispatcher(config, clients, router, CapacityTracker(config))
            messages = [ChatMessage(role="user", content=["hi"])]
            route = dispatcher.choose("auto", messages=messages)
            # Random weights at temperature 1 with different seeds: a short answer that differs.
            request = GenerationRequest(
                "r1", SamplingParams(max_tokens=2, temperature=1.0, seed=7), messages=messages
            )
            return route, await dispatcher.generate(route, request)
        finally:
            await asyncio.gather(*(s.shutdown() for s in servers.values()))

    route, (result, final) = asyncio.run(main())
    assert route.model.size == "0.8b"
    assert final.routing["second_sample_tokens"] >= 1
    assert final.model.size == "2b" and final.routing["escalation_reason"] == "disagreement"
