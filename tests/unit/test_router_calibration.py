"""Calibration: target shares in, the same shares out on the sample (as far as ties allow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from cluster.router_config import RouterConfig
from deployments.router.policy import RoutingPolicy
from deployments.router.scorers import FeatureScorer
from pipelines.router_training.calibration import (
    achieved_shares,
    parse_shares,
    thresholds_for_shares,
    yaml_snippet,
)
from pipelines.router_training.dataset import load_rows

pytestmark = pytest.mark.unit

SEED_SET = Path(__file__).resolve().parents[2] / "training" / "router" / "data" / "prompts.jsonl"
SIZES = ("0.8b", "2b", "4b", "9b")


def test_parse_shares():
    assert parse_shares("0.4,0.3,0.2,0.1") == pytest.approx((0.4, 0.3, 0.2, 0.1))
    assert sum(parse_shares("0.25, 0.25, 0.25, 0.251")) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5,0.5", "one share per size"),
        ("0.5,0.3,0.3,0.1", "sum to 1"),
        ("0.5,-0.1,0.5,0.1", "not be negative"),
        ("a,b,c,d", "comma-separated numbers"),
    ],
)
def test_parse_shares_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shares(text)


@pytest.mark.parametrize("shares", [(0.4, 0.3, 0.2, 0.1), (0.25, 0.25, 0.25, 0.25), (0.7, 0.1, 0.1, 0.1)])
def test_continuous_scores_get_the_requested_shares(shares):
    rng = random.Random(7)
    scores = [rng.betavariate(2, 3) for _ in range(5000)]
    thresholds = thresholds_for_shares(scores, shares)
    assert list(thresholds) == sorted(thresholds)
    assert achieved_shares(scores, thresholds) == pytest.approx(shares, abs=0.002)


def test_calibrated_thresholds_route_those_shares_through_the_policy():
    rng = random.Random(3)
    sample = [rng.random() ** 2 for _ in range(2000)]
    thresholds = thresholds_for_shares(sample, (0.4, 0.3, 0.2, 0.1))
    policy = RoutingPolicy(RouterConfig(enabled=True, thresholds=thresholds), SIZES)
    routed = [policy.decide(score, scorer="x").size for score in sample]
    shares = [routed.count(size) / len(routed) for size in SIZES]
    assert shares == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=0.002)


def test_ties_land_on_the_closest_achievable_share():
    scores = [0.1] * 50 + [0.5] * 30 + [0.9] * 20
    thresholds = thresholds_for_shares(scores, (0.4, 0.3, 0.2, 0.1))
    achieved = achieved_shares(scores, thresholds)
    # 40% cannot be cut out of a block of 50 equal scores: the nearest cut gives 50%. For 90% the cuts
    # at 80% and 100% are equally close, and the lower one wins.
    assert achieved == pytest.approx((0.5, 0.3, 0.0, 0.2))
    assert RouterConfig(thresholds=thresholds).thresholds == thresholds


def test_zero_shares_give_empty_sizes():
    rng = random.Random(1)
    scores = [rng.random() for _ in range(1000)]
    thresholds = thresholds_for_shares(scores, (0.6, 0.4, 0.0, 0.0))
    assert achieved_shares(scores, thresholds) == pytest.approx((0.6, 0.4, 0.0, 0.0), abs=0.002)


def test_single_score_sample():
    thresholds = thresholds_for_shares([0.3], (0.4, 0.3, 0.2, 0.1))
    assert sum(achieved_shares([0.3], thresholds)) == pytest.approx(1.0)


def test_empty_sample_is_rejected():
    with pytest.raises(ValueError, match="at least one"):
        thresholds_for_shares([], (0.4, 0.3, 0.2, 0.1))


def test_feature_scorer_on_the_seed_prompts_gets_close_to_the_shares():
    scorer = FeatureScorer()
    scores = [scorer.score(row.request).difficulty for row in load_rows(SEED_SET)]
    thresholds = thresholds_for_shares(scores, (0.4, 0.3, 0.2, 0.1))
    assert achieved_shares(scores, thresholds) == pytest.approx((0.4, 0.3, 0.2, 0.1), abs=0.03)


def test_yaml_snippet_is_a_valid_router_block():
    block = yaml.safe_load(yaml_snippet((0.123456789, 0.5, 0.75), "blend"))["router"]
    config = RouterConfig(**block)
    assert config.thresholds == pytest.approx((0.123457, 0.5, 0.75))
    assert config.scorer == "blend"
