"""The quality policy: model-card priors, the tolerance rule, size offsets and their calibration, the sweep."""

from __future__ import annotations

import json
import math

import pytest

from cluster.catalog import SIZES
from cluster.router_config import RouterConfig
from deployments.router.policy import RoutingPolicy
from deployments.router.quality import DEFAULT_PRIORS, QualityTable, choose_size, prior_table
from deployments.router.routing_input import RoutingInput
from pipelines.router_training.calibration import bias_for_shares, bias_snippet
from pipelines.router_training.dataset import LabeledRow
from pipelines.router_training.evaluation import routing_score, spearman
from pipelines.router_training.sweep import plot, sweep

pytestmark = pytest.mark.unit


def one_hot(level: int) -> list[float]:
    return [1.0 if k == level else 0.0 for k in range(4)]


def test_priors_give_larger_sizes_more_quality_and_harder_levels_less():
    table = prior_table()
    assert set(table.groups) >= {
        "knowledge",
        "maths",
        "coding",
        "instruction",
        "vision",
        "long_context",
        "multilingual",
    }
    for group in table.groups:
        for level in range(4):
            row = table.cells[group][level]
            assert [row[s] for s in SIZES] == sorted(row[s] for s in SIZES)
        assert table.cells[group][0]["0.8b"] > table.cells[group][3]["0.8b"]


# Groups whose cards put 9B less than 0.10 above 4B at every difficulty: no level can need 9B.
SMALL_TOP_GAP = {"vision", "long_context", "tool_use"}


def test_each_level_goes_to_its_rubric_size_at_the_priors_tolerance():
    table = prior_table()
    for group in table.groups:
        chosen = [choose_size(table.estimate({group: 1.0}, one_hot(k)), SIZES, 0.10) for k in range(4)]
        expected = ["0.8b", "2b", "4b", "4b" if group in SMALL_TOP_GAP else "9b"]
        assert chosen == expected, group


def level_head_probabilities(estimate: float) -> list[float]:
    """The level probabilities the trained level head gives a request it estimates at `estimate`."""
    from pipelines.router_training.training import LEVEL_WIDTH

    logits = [(2 * k * estimate - k * k) / LEVEL_WIDTH**2 for k in range(4)]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("offset", [-0.3, 0.0, 0.3])
def test_a_request_the_level_head_places_near_level_k_goes_to_size_k(offset):
    # The head's spread is mixed into the estimates; at width 1.0 it alone sent a maths, coding or
    # instruction request estimated at exactly level 1 to 4b (training/router/README.md, "The level
    # spread").
    table = prior_table()
    for group in table.groups:
        for level in range(4):
            estimate = min(3.0, max(0.0, level + offset))
            chosen = choose_size(table.estimate({group: 1.0}, level_head_probabilities(estimate)), SIZES, 0.10)
            expected = "4b" if level == 3 and group in SMALL_TOP_GAP else SIZES[level]
            assert chosen == expected, (group, estimate)


def test_the_shipped_level_head_has_the_trained_width():
    from deployments.router.artifact import DEFAULT_ARTIFACT, LearnedArtifact
    from pipelines.router_training.training import LEVEL_WIDTH

    # Intercepts (2k e - k^2) / w^2: their second difference is -2 / w^2 whatever e is.
    intercept = LearnedArtifact.load(DEFAULT_ARTIFACT).level.intercept.astype(float)
    assert intercept[2] - 2 * intercept[1] + intercept[0] == pytest.approx(-2 / LEVEL_WIDTH**2, rel=1e-3)


def priors_with_tolerance(tmp_path, value):
    """A copy of the shipped priors file with `levels_match_sizes_at_tolerance` set (None: removed)."""
    document = json.loads(DEFAULT_PRIORS.read_text())
    document.pop("levels_match_sizes_at_tolerance")
    if value is not None:
        document["levels_match_sizes_at_tolerance"] = value
    path = tmp_path / "priors.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("value", ["0.1", -0.1, 1.5, True])
def test_a_bad_level_tolerance_in_the_priors_file_is_named(tmp_path, value):
    with pytest.raises(ValueError, match="levels_match_sizes_at_tolerance must be a number"):
        prior_table(priors_with_tolerance(tmp_path, value))


def test_shared_offsets_alone_contradict_the_rubric_where_the_cards_gaps_differ(tmp_path):
    table = prior_table(priors_with_tolerance(tmp_path, None))
    # Level 1 (easy): AIME-sized maths gaps send it to 4b, the small vision gap to 0.8b.
    assert choose_size(table.estimate({"maths": 1.0}, one_hot(1)), SIZES, 0.10) == "4b"
    assert choose_size(table.estimate({"vision": 1.0}, one_hot(1)), SIZES, 0.10) == "0.8b"
    # Levels the shared offsets already place right are the same cells in both tables.
    aligned = prior_table()
    assert aligned.cells["knowledge"] == table.cells["knowledge"]
    assert aligned.cells["maths"][2] == table.cells["maths"][2]


def test_tolerance_trades_quality_for_cost():
    estimates = {"0.8b": 0.50, "2b": 0.70, "4b": 0.85, "9b": 0.90}
    assert choose_size(estimates, SIZES, 0.0) == "9b"
    assert choose_size(estimates, SIZES, 0.05) == "4b"
    assert choose_size(estimates, SIZES, 0.2) == "2b"
    assert choose_size(estimates, SIZES, 1.0) == "0.8b"
    assert choose_size(estimates, ("0.8b", "2b"), 0.1) == "2b"  # the best *served* size is the bar
    assert choose_size(estimates, SIZES, 0.05, bias={"2b": 0.2}) == "2b"


def test_policy_reports_family_estimates_and_keeps_them_on_redecision():
    policy = RoutingPolicy(RouterConfig(enabled=True), SIZES, quality=prior_table())
    decision = policy.decide(0.9, scorer="x", levels=one_hot(3), groups={"maths": 1.0}, family="proof")
    assert decision.size == "9b" and decision.reason == "quality"
    assert decision.detail.startswith("family=proof;p=0.8b:")
    again = policy.decide(0.9, scorer="x", estimates=decision.estimates, family="proof")
    assert again.estimates == decision.estimates and again.size == "9b"
    thresholds = RoutingPolicy(RouterConfig(enabled=True, policy="thresholds"), SIZES, quality=prior_table())
    assert thresholds.decide(0.9, scorer="x", levels=one_hot(0), groups={"maths": 1.0}).reason == "score>t3"


def test_unknown_groups_fall_back_to_the_mean_over_groups():
    table = QualityTable(cells={"a": [dict.fromkeys(SIZES, 0.2)] * 4, "b": [dict.fromkeys(SIZES, 0.6)] * 4})
    assert table.estimate({"zzz": 1.0}, one_hot(1))["2b"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="levels"):
        QualityTable.from_json({"cells": {"a": [dict.fromkeys(SIZES, 0.2)]}})


def test_size_offsets_reach_traffic_shares():
    table = prior_table()
    estimates = [table.estimate({"maths": 1.0}, one_hot(k % 4)) for k in range(400)]
    bias, achieved = bias_for_shares(estimates, SIZES, 0.1, [0.7, 0.1, 0.1, 0.1])
    assert achieved[0] == pytest.approx(0.7, abs=0.06)
    assert "size_bias" in bias_snippet(bias, 0.1)
    with pytest.raises(ValueError):
        bias_for_shares([], SIZES, 0.1, [1, 0, 0, 0])


def test_sweep_and_curve(tmp_path):
    policy = RoutingPolicy(RouterConfig(enabled=True), SIZES, quality=prior_table())
    rows, decisions = [], []
    for k in range(4):
        rows.append(
            LabeledRow(
                request=RoutingInput("x"),
                size=SIZES[k],
                correct={s: float(i >= k) for i, s in enumerate(SIZES)},
            )
        )
        decisions.append(policy.decide(0.5, scorer="x", levels=one_hot(k), groups={"knowledge": 1.0}))
    points, measured = sweep(rows, decisions, SIZES)
    assert measured and points[0].cost == 1.0 and points[0].quality == 1.0
    assert points[-1].cost < points[0].cost
    assert plot(points, measured, tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert routing_score(decisions[3], "0.8b", "9b") > routing_score(decisions[0], "0.8b", "9b")


def test_spearman():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


@pytest.mark.parametrize("signal", ["tools", "structured"])
def test_structure_signals_move_requests_up_never_down(signal):
    policy = RoutingPolicy(RouterConfig(enabled=True), SIZES, quality=prior_table())
    moved = 0
    # Each level, and each pair of neighbouring levels half and half (an uncertain estimate).
    mixes = [one_hot(k) for k in range(4)] + [
        [(a + b) / 2 for a, b in zip(one_hot(k), one_hot(k + 1), strict=True)] for k in range(3)
    ]
    for group in policy.quality.groups:
        for levels in mixes:
            plain = policy.decide(0.5, scorer="x", levels=levels, groups={group: 1.0})
            shaped = policy.decide(0.5, scorer="x", levels=levels, groups={group: 1.0}, structure=(signal,))
            assert SIZES.index(shaped.size) >= SIZES.index(plain.size), (group, levels)
            assert shaped.reason == f"quality+{signal}" and plain.reason == "quality"
            moved += shaped.size != plain.size
    assert moved >= 2  # a signal, not noise: it decides some requests


def test_structure_weight_zero_ignores_the_signal_and_tools_raise_an_easy_image_request():
    quality = prior_table()
    off = RouterConfig(enabled=True, structure_weights={"tools": 0.0, "structured": 0.0})
    ignored = RoutingPolicy(off, SIZES, quality=quality)
    easy = [0.5, 0.5, 0.0, 0.0]  # between trivial and easy
    plain = ignored.decide(0.5, scorer="x", levels=easy, groups={"vision": 1.0})
    shaped = ignored.decide(0.5, scorer="x", levels=easy, groups={"vision": 1.0}, structure=("tools",))
    assert shaped.estimates == plain.estimates
    weighed = RoutingPolicy(RouterConfig(enabled=True), SIZES, quality=quality)
    tools = weighed.decide(0.5, scorer="x", levels=easy, groups={"vision": 1.0}, structure=("tools",))
    assert (plain.size, tools.size) == ("0.8b", "2b")
    assert all(tools.estimates[s] < plain.estimates[s] for s in SIZES)  # both parts must be right


def test_router_carries_structure_from_the_input_and_rejects_unknown_signals():
    from deployments.router.router import Router
    from deployments.router.routing_input import from_request

    router = Router(RouterConfig(enabled=True, scorer="features"), SIZES)
    one = router.decide(RoutingInput(query="Write a haiku about rain.", structure=("tools",)))
    many = router.decide_many([RoutingInput(query="Write a haiku about rain.", structure=("tools",))])
    assert one.reason == many[0].reason == "quality+tools"
    with pytest.raises(ValueError, match="unknown structure signals"):
        from_request(None, "hi", ("schema",))
