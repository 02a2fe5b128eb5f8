"""The Router facade: built from config alone, routes chats and prompts, respects served sizes."""

from __future__ import annotations

import pytest

from cluster.config import load_config
from cluster.router_config import RouterConfig
from deployments.engines.base import ChatMessage, ImageInput
from deployments.router import RouteDecision, Router, SizeCapacity, build_router
from deployments.router.routing_input import RoutingInput

pytestmark = pytest.mark.unit

ALL = ("0.8b", "2b", "4b", "9b")


def user(*parts) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=list(parts))]


@pytest.fixture
def router() -> Router:
    return build_router(RouterConfig(enabled=True, scorer="features"), ALL)


def test_easy_and_hard_chats_go_to_small_and_large_sizes(router):
    easy = router.route(user("hi! how are you?"))
    hard = router.route(
        user("Prove that there are infinitely many primes congruent to 3 mod 4. Give a rigorous proof.")
    )
    assert isinstance(easy, RouteDecision)
    assert easy.size == "0.8b" and hard.size in ("4b", "9b")
    assert easy.scorer == "features" and "length" in easy.features
    assert easy.thinking is False and hard.thinking is True


def test_completion_prompts_are_routed_too(router):
    decision = router.route(prompt="Find all positive integers n such that n^2 + 1 divides n^3 + 5.")
    assert decision.size == "9b"
    assert decision.reason == "quality"
    assert decision.detail.startswith("family=maths;p=0.8b:")


def test_images_raise_the_difficulty(router):
    plain = router.route(user("What is in it?"))
    with_images = router.route(user("What is in it?", ImageInput(b"a"), ImageInput(b"b"), ImageInput(b"c")))
    assert with_images.difficulty > plain.difficulty
    assert with_images.features["image_count"] == 3.0


def test_requested_thinking_wins(router):
    assert router.route(user("hi"), requested_thinking=True).thinking is True
    assert (
        router.route(prompt="Prove Fermat's little theorem rigorously.", requested_thinking=False).thinking
        is False
    )


def test_capacity_is_applied(router):
    decision = router.route(user("hello!"), capacity={"0.8b": SizeCapacity(ready_replicas=0)})
    assert decision.size == "2b"
    assert decision.reason == "quality,capacity_up:no_replica"


def test_redecide_reuses_the_score_with_new_capacity(router):
    first = router.route(user("hello!"))
    again = router.redecide(first, capacity={first.size: SizeCapacity(ready_replicas=1, queue_full=True)})
    assert again.difficulty == first.difficulty and again.features == first.features
    assert again.estimates == first.estimates and again.family == first.family
    assert again.size == "2b" and again.reason.endswith("capacity_up:queue_full")
    with_tools = router.decide(RoutingInput(query="hello!", structure=("tools",)))
    full = {with_tools.size: SizeCapacity(ready_replicas=1, queue_full=True)}
    assert router.redecide(with_tools, capacity=full).reason.startswith("quality+tools,capacity_")
    disabled = build_router(RouterConfig(enabled=False), ALL)
    off = disabled.route(user("hello!"))
    assert disabled.redecide(off, capacity={"0.8b": SizeCapacity(0)}) == off


def test_served_subset_is_respected():
    cpu = load_config(profile="cpu")
    served = [m.size for m in cpu.enabled_models()]
    router = build_router(RouterConfig(enabled=True, scorer="features"), served)
    decision = router.route(prompt="Prove that every tree with n vertices has n - 1 edges, rigorously.")
    assert decision.size == served[-1] and decision.reason == "quality"
    assert set(decision.estimates) == set(served)
    assert router.served_sizes == tuple(served)
    thresholds = build_router(RouterConfig(enabled=True, scorer="features", policy="thresholds"), served)
    decision = thresholds.route(prompt="Prove that every tree with n vertices has n - 1 edges, rigorously.")
    assert decision.size == served[-1] and "not_served" in decision.reason


@pytest.mark.parametrize("scorer", ["features", "learned"])
def test_greetings_go_to_the_smallest_size(scorer):
    # The failure: "How ya doing?" scored 0.26 and went to 2b.
    router = build_router(RouterConfig(enabled=True, scorer=scorer), ALL)
    # A comma after the greeting is not a part of a multi-part ask (features.joined_parts).
    for text in (
        "How ya doing?",
        "hi",
        "Hi, how are you?",
        "Hola, ¿qué tal?",
        "Hallo, wie geht's?",
        "thanks, bye!",
    ):
        assert router.route(user(text)).size == "0.8b", text


def test_short_but_hard_prompts_go_to_large_sizes():
    router = build_router(RouterConfig(enabled=True, scorer="learned"), ALL)
    for text in (
        "Find the remainder when 7^2024 is divided by 1000.",
        "build a compiler for a small typed language in Rust",
        "Prove that the square root of 2 is irrational.",
    ):
        assert router.route(user(text)).size in ("4b", "9b"), text


def test_a_stale_artifact_falls_back_to_features_once(tmp_path, caplog):
    import json

    from deployments.router.artifact import DEFAULT_ARTIFACT

    document = json.loads(DEFAULT_ARTIFACT.read_text())
    document["embedding"]["model"] = "some/other-model"
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(document))
    with caplog.at_level("WARNING"):
        router = build_router(RouterConfig(enabled=True, scorer="learned", artifact_path=stale), ALL)
    assert router.scorer.name == "features"
    warnings = [r for r in caplog.records if "some/other-model" in r.getMessage()]
    assert len(warnings) == 1 and "features" in warnings[0].getMessage()
    assert router.route(user("hi")).size == "0.8b"


def test_disabled_router_uses_the_fallback_and_builds_no_scorer():
    router = build_router(RouterConfig(enabled=False, fallback_size="2b", scorer="learned"), ALL)
    assert router.scorer is None
    decision = router.route(user("Prove the Riemann hypothesis."))
    assert (decision.size, decision.reason) == ("2b", "router_disabled")
    with pytest.raises(RuntimeError, match="routing is off"):
        router.decide_many([RoutingInput(query="x")])


def test_decide_many_matches_route(router):
    prompts = [
        "hi",
        "Implement a trie in Rust with insert and prefix search.",
        "Prove that sqrt(3) is irrational.",
    ]
    many = router.decide_many([RoutingInput(query=p) for p in prompts])
    one_by_one = [router.route(prompt=p) for p in prompts]
    assert [d.size for d in many] == [d.size for d in one_by_one]
    assert [d.difficulty for d in many] == pytest.approx([d.difficulty for d in one_by_one])


def test_unknown_scorer_is_a_config_error():
    with pytest.raises(ValueError):
        RouterConfig(enabled=True, scorer="magic")


def test_blend_router_from_config_alone():
    router = build_router(RouterConfig(enabled=True, scorer="blend", blend_learned_weight=0.5), ALL)
    assert router.policy.quality.source == "model-card priors"
    decision = router.route(user("Give a rigorous proof that 2^n > n^2 for every n >= 5."))
    assert decision.scorer == "blend"
    assert decision.difficulty == pytest.approx(
        0.5 * decision.features["features_score"] + 0.5 * decision.features["learned_score"]
    )
    assert decision.size in ("4b", "9b")


def test_warm_up_scores_one_request_and_is_a_no_op_with_routing_off():
    class CountingScorer:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def score(self, request):
            self.calls += 1
            return self.inner.score(request)

    config = RouterConfig(enabled=True, scorer="features")
    scorer = CountingScorer(build_router(config, ALL).scorer)
    Router(config, ALL, scorer=scorer).warm_up()
    assert scorer.calls == 1
    Router(RouterConfig(enabled=False), ALL).warm_up()  # no scorer: nothing to warm
