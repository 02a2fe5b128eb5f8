"""Evaluation: distribution, accuracy, confusion, relative cost, quality, PGR and APGR."""

from __future__ import annotations

import random

import pytest

from deployments.router.policy import RouteDecision
from deployments.router.routing_input import RoutingInput
from pipelines.router_training.dataset import LabeledRow
from pipelines.router_training.evaluation import apgr, evaluate

pytestmark = pytest.mark.unit

ALL = ("0.8b", "2b", "4b", "9b")


def row(size=None, correct=None) -> LabeledRow:
    return LabeledRow(request=RoutingInput(query="q"), size=size, correct=correct)


def routed(size: str, difficulty: float = 0.5) -> RouteDecision:
    return RouteDecision(size=size, difficulty=difficulty, reason="r", thinking=False, scorer="features")


def test_distribution_accuracy_and_confusion():
    rows = [row("0.8b"), row("0.8b"), row("2b"), row("9b")]
    decisions = [routed("0.8b"), routed("2b"), routed("2b"), routed("4b")]
    report = evaluate(rows, decisions, ALL)
    assert report.distribution == {"0.8b": 1, "2b": 2, "4b": 1, "9b": 0}
    assert report.accuracy == pytest.approx(0.5)
    assert report.within_one == pytest.approx(1.0)
    assert report.under_routed == pytest.approx(0.25)
    assert report.confusion[0] == [1, 1, 0, 0]
    assert report.confusion[3] == [0, 0, 1, 0]


def test_relative_cost_is_by_parameter_count_against_the_largest_size():
    rows = [row("0.8b"), row("9b")]
    report = evaluate(rows, [routed("0.8b"), routed("9b")], ALL)
    assert report.relative_cost == pytest.approx((0.8 / 9 + 1.0) / 2)
    assert evaluate([row("9b")], [routed("9b")], ALL).relative_cost == pytest.approx(1.0)


def test_label_from_correctness_is_the_smallest_correct_size():
    assert row(correct={"0.8b": 0, "2b": 1, "4b": 1, "9b": 1}).label == "2b"
    assert row(correct={"0.8b": 0, "2b": 0, "4b": 0, "9b": 0}).label is None
    assert row(size="4b", correct={"0.8b": 1, "2b": 1, "4b": 1, "9b": 1}).label == "4b"


def test_quality_pgr_against_always_largest():
    correct = [
        {"0.8b": 1, "2b": 1, "4b": 1, "9b": 1},
        {"0.8b": 0, "2b": 1, "4b": 1, "9b": 1},
        {"0.8b": 0, "2b": 0, "4b": 0, "9b": 1},
        {"0.8b": 0, "2b": 0, "4b": 0, "9b": 0},
    ]
    rows = [row(correct=c) for c in correct]
    decisions = [routed("0.8b", 0.1), routed("2b", 0.4), routed("4b", 0.7), routed("0.8b", 0.2)]
    quality = evaluate(rows, decisions, ALL).quality
    assert quality is not None
    assert quality.per_size == {"0.8b": 0.25, "2b": 0.5, "4b": 0.5, "9b": 0.75}
    assert quality.routed == pytest.approx(0.5)
    assert quality.pgr == pytest.approx((0.5 - 0.25) / (0.75 - 0.25))
    assert (quality.weak, quality.strong) == ("0.8b", "9b")


def test_quality_skips_rows_without_every_served_size():
    rows = [row(correct={"0.8b": 1, "9b": 1}), row("2b")]
    report = evaluate(rows, [routed("0.8b"), routed("2b")], ("0.8b", "9b"))
    assert report.quality is not None and report.quality.rows == 1
    assert evaluate([row("2b")], [routed("2b")], ALL).quality is None


def _sample(n=400, seed=0):
    rng = random.Random(seed)
    weak, strong, hardness = [], [], []
    for _ in range(n):
        h = rng.random()
        hardness.append(h)
        strong.append(1.0 if rng.random() > h * 0.3 else 0.0)
        weak.append(1.0 if rng.random() > h else 0.0)
    return hardness, weak, strong


def test_apgr_rewards_a_score_that_tracks_hardness():
    hardness, weak, strong = _sample()
    informed = apgr(hardness, weak, strong)
    noise = apgr([random.Random(i).random() for i in range(len(hardness))], weak, strong)
    inverted = apgr([-h for h in hardness], weak, strong)
    assert informed > 0.6
    assert noise == pytest.approx(0.5, abs=0.1)
    assert inverted < 0.4


def test_apgr_is_undefined_without_a_gap():
    assert apgr([0.1, 0.9], [1, 0], [1, 0]) is None
    assert apgr([], [], []) is None


def test_report_lines_mention_every_figure():
    rows = [
        row("0.8b", correct={"0.8b": 1, "2b": 1, "4b": 1, "9b": 1}),
        row("9b", correct={"0.8b": 0, "2b": 0, "4b": 0, "9b": 1}),
    ]
    text = "\n".join(evaluate(rows, [routed("0.8b", 0.1), routed("9b", 0.9)], ALL).lines())
    for needle in (
        "route distribution",
        "relative cost",
        "accuracy vs labels",
        "confusion",
        "APGR",
        "PGR",
        "always 9b",
    ):
        assert needle in text


def test_one_decision_per_row():
    with pytest.raises(ValueError):
        evaluate([row("2b")], [], ALL)
