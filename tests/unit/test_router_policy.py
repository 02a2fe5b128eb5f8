"""Thresholds, served sizes, capacity fallback and the thinking rule of the routing policy."""

from __future__ import annotations

import pytest

from cluster.router_config import RouterConfig
from deployments.router.policy import RoutingPolicy, SizeCapacity, order_sizes

pytestmark = pytest.mark.unit

ALL = ("0.8b", "2b", "4b", "9b")


def policy(served=ALL, **config) -> RoutingPolicy:
    return RoutingPolicy(RouterConfig(enabled=True, **config), served)


@pytest.mark.parametrize(
    ("difficulty", "size", "reason"),
    [
        (0.0, "0.8b", "score<=t1"),
        (0.2, "0.8b", "score<=t1"),
        (0.2000001, "2b", "t1<score<=t2"),
        (0.5, "2b", "t1<score<=t2"),
        (0.7, "4b", "t2<score<=t3"),
        (0.95, "9b", "score>t3"),
        (1.0, "9b", "score>t3"),
    ],
)
def test_thresholds_map_scores_to_sizes(difficulty, size, reason):
    decision = policy(thresholds=(0.2, 0.5, 0.8)).decide(difficulty, scorer="features")
    assert (decision.size, decision.reason) == (size, reason)


def test_equal_thresholds_give_the_middle_size_nothing():
    p = policy(thresholds=(0.3, 0.3, 0.8))
    assert {p.decide(d / 100, scorer="x").size for d in range(101)} == {"0.8b", "4b", "9b"}


def test_difficulty_is_clipped_into_unit_interval():
    p = policy()
    assert p.decide(1.7, scorer="x").difficulty == 1.0
    assert p.decide(-0.2, scorer="x").difficulty == 0.0


@pytest.mark.parametrize(
    ("difficulty", "size", "reason"),
    [
        (0.1, "0.8b", "score<=t1"),
        (0.4, "2b", "t1<score<=t2"),
        (0.6, "2b", "t2<score<=t3,not_served:4b"),
        (0.9, "2b", "score>t3,not_served:9b"),
    ],
)
def test_only_served_sizes_are_picked(difficulty, size, reason):
    decision = policy(served=("0.8b", "2b")).decide(difficulty, scorer="features")
    assert (decision.size, decision.reason) == (size, reason)


def test_nearest_served_prefers_the_larger_size_on_a_tie():
    p = policy(served=("0.8b", "4b"))
    assert p.nearest_served("2b") == "4b"
    assert p.nearest_served("9b") == "4b"
    assert policy(served=("9b",)).nearest_served("0.8b") == "9b"


def test_next_size_up_skips_unserved_sizes():
    p = policy(served=("0.8b", "4b", "9b"))
    assert p.next_size_up("0.8b") == "4b"
    assert p.next_size_up("2b") == "4b"
    assert p.next_size_up("9b") is None


def test_order_sizes_rejects_unknown_and_empty():
    assert order_sizes(["9b", "0.8b", "9b"]) == ("0.8b", "9b")
    with pytest.raises(ValueError, match="unknown sizes"):
        order_sizes(["70b"])
    with pytest.raises(ValueError, match="at least one"):
        order_sizes([])


def test_capacity_moves_up_to_the_nearest_ready_size():
    capacity = {
        "2b": SizeCapacity(ready_replicas=0),
        "4b": SizeCapacity(ready_replicas=0),
        "9b": SizeCapacity(1),
    }
    decision = policy(thresholds=(0.2, 0.5, 0.8)).decide(0.4, scorer="f", capacity=capacity)
    assert decision.size == "9b"
    assert decision.reason == "t1<score<=t2,capacity_up:no_replica"


def test_capacity_moves_down_when_configured():
    capacity = {"4b": SizeCapacity(ready_replicas=2, queue_full=True)}
    decision = policy(thresholds=(0.2, 0.5, 0.8), capacity_fallback="down").decide(
        0.7, scorer="f", capacity=capacity
    )
    assert decision.size == "2b"
    assert decision.reason == "t2<score<=t3,capacity_down:queue_full"


def test_sizes_missing_from_capacity_count_as_ready():
    decision = policy(thresholds=(0.2, 0.5, 0.8)).decide(0.4, scorer="f", capacity={"2b": SizeCapacity(0)})
    assert decision.size == "4b"


def test_capacity_keeps_the_choice_when_nothing_in_that_direction_can_take_it():
    capacity = {"9b": SizeCapacity(ready_replicas=0)}
    decision = policy().decide(0.95, scorer="f", capacity=capacity)
    assert decision.size == "9b"
    assert decision.reason == "score>t3,capacity_none:no_replica"


def test_capacity_fallback_off_keeps_the_choice_and_says_so():
    decision = policy(capacity_fallback="off").decide(0.1, scorer="f", capacity={"0.8b": SizeCapacity(0)})
    assert (decision.size, decision.reason) == ("0.8b", "score<=t1,capacity_off:no_replica")


def test_ready_size_is_kept():
    decision = policy().decide(0.1, scorer="f", capacity={"0.8b": SizeCapacity(3)})
    assert (decision.size, decision.reason) == ("0.8b", "score<=t1")


def test_capacity_only_considers_served_sizes():
    capacity = {"0.8b": SizeCapacity(0)}
    decision = policy(served=("0.8b", "9b")).decide(0.1, scorer="f", capacity=capacity)
    assert decision.size == "9b"


def test_shortage_reasons():
    assert SizeCapacity(0).shortage == "no_replica"
    assert SizeCapacity(0, queue_full=True).shortage == "no_replica"
    assert SizeCapacity(1, queue_full=True).shortage == "queue_full"
    assert SizeCapacity(1).shortage is None


class TestThinking:
    def test_explicit_request_always_wins(self):
        for mode in ("difficulty", "size_default", "always", "never"):
            p = policy(thinking={"mode": mode})
            assert p.decide(0.0, scorer="f", requested_thinking=True).thinking is True
            assert p.decide(1.0, scorer="f", requested_thinking=False).thinking is False

    def test_difficulty_mode_derives_its_threshold_from_the_catalog(self):
        # 4b is the smallest size that thinks by default, so thinking starts at thresholds[1].
        p = policy(thresholds=(0.2, 0.5, 0.8))
        assert p.thinking_min_difficulty == 0.5
        assert p.decide(0.49, scorer="f").thinking is False
        assert p.decide(0.5, scorer="f").thinking is True
        assert p.decide(0.9, scorer="f").thinking is True

    def test_difficulty_mode_with_explicit_threshold(self):
        p = policy(thinking={"mode": "difficulty", "min_difficulty": 0.3})
        assert p.decide(0.29, scorer="f").thinking is False
        assert p.decide(0.3, scorer="f").thinking is True

    def test_difficulty_mode_follows_the_score_not_the_size(self):
        # An easy request moved up by capacity to 4b still does not think.
        p = policy(thresholds=(0.2, 0.5, 0.8))
        decision = p.decide(0.1, scorer="f", capacity={"0.8b": SizeCapacity(0), "2b": SizeCapacity(0)})
        assert decision.size == "4b" and decision.thinking is False

    def test_size_default_mode_uses_the_catalog(self):
        p = policy(thresholds=(0.2, 0.5, 0.8), thinking={"mode": "size_default"})
        assert [p.decide(d, scorer="f").thinking for d in (0.1, 0.4, 0.6, 0.9)] == [False, False, True, True]

    def test_always_and_never(self):
        assert policy(thinking={"mode": "always"}).decide(0.0, scorer="f").thinking is True
        assert policy(thinking={"mode": "never"}).decide(1.0, scorer="f").thinking is False


def test_disabled_decision_uses_the_fallback_size_and_its_default_thinking():
    p = RoutingPolicy(RouterConfig(enabled=False, fallback_size="4b"), ALL)
    decision = p.disabled()
    assert (decision.size, decision.reason, decision.thinking, decision.scorer) == (
        "4b",
        "router_disabled",
        True,
        "none",
    )
    assert p.disabled(requested_thinking=False).thinking is False


def test_disabled_fallback_maps_to_a_served_size():
    p = RoutingPolicy(RouterConfig(enabled=False, fallback_size="9b"), ("0.8b", "2b"))
    assert p.disabled().size == "2b"


def test_decision_carries_scorer_and_features():
    decision = policy().decide(0.3, scorer="blend", features={"length": 0.1})
    assert decision.scorer == "blend"
    assert decision.features == {"length": 0.1}
