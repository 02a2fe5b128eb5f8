"""Escalation rules: cut-off thinking, loops, low confidence; never past the largest served size."""

from __future__ import annotations

import pytest

from cluster.router_config import EscalationConfig, RouterConfig
from deployments.router import RouteDecision, Router
from deployments.router.escalation import escalation_reason, is_looping
from deployments.router.scorers import FeatureScorer

pytestmark = pytest.mark.unit

PROSE = (
    "The committee reviewed the budget line by line. Travel costs were cut by a fifth, while the training "
    "budget grew slightly to cover two new courses. Maintenance stayed flat. The chair asked for a revised "
    "forecast by Friday, with notes on each change and the assumptions behind the new figures."
)


def config(**overrides) -> EscalationConfig:
    return EscalationConfig(enabled=True, **overrides)


def reason(cfg=None, *, mean_logprob=-0.2, finish_reason="stop", thinking_unfinished=False, text=PROSE):
    return escalation_reason(
        cfg or config(),
        mean_logprob=mean_logprob,
        finish_reason=finish_reason,
        thinking_unfinished=thinking_unfinished,
        completion_text=text,
    )


class TestLoopDetection:
    def test_repeated_sentence_is_a_loop(self):
        assert is_looping(PROSE[:80] + "I think so. " * 40, window=240, min_repeats=3)

    def test_repeated_single_token_is_a_loop(self):
        assert is_looping("Answer: " + "the " * 100, window=240, min_repeats=3)

    def test_loop_with_partial_unit_at_the_end_and_trailing_space(self):
        assert is_looping("We compute: " + "x = x + 1; " * 30 + "x = x", window=240, min_repeats=3)
        assert is_looping("abc " * 100 + "\n\n  ", window=240, min_repeats=3)

    def test_ordinary_prose_is_not_a_loop(self):
        assert not is_looping(PROSE, window=240, min_repeats=3)

    def test_counting_is_not_a_loop(self):
        assert not is_looping(" ".join(str(i) for i in range(200)), window=240, min_repeats=3)

    def test_text_shorter_than_the_window_is_never_a_loop(self):
        assert not is_looping("ha " * 20, window=240, min_repeats=3)

    def test_unit_repeated_fewer_times_than_required_is_not_a_loop(self):
        unit = PROSE[:120]
        assert is_looping(unit * 4, window=240, min_repeats=2)
        assert not is_looping(unit * 4, window=240, min_repeats=3)


class TestReasons:
    def test_good_answer_is_not_escalated(self):
        assert reason() is None

    def test_disabled_never_escalates(self):
        assert reason(EscalationConfig(enabled=False), mean_logprob=-9.0, text="no " * 200) is None

    def test_low_confidence(self):
        # The default rule reads the per-token probability quantile; the length-biased mean
        # log-probability counts only where a config still sets `min_mean_logprob`.
        assert reason(mean_logprob=-2.0) is None
        legacy = config(min_mean_logprob=-1.5)
        assert reason(legacy, mean_logprob=-2.0) == "low_confidence"
        assert reason(legacy, mean_logprob=-1.5) is None  # at the threshold is fine
        assert reason(config(min_mean_logprob=-0.1), mean_logprob=-0.2) == "low_confidence"

    def test_unknown_confidence_is_not_low(self):
        assert reason(mean_logprob=None) is None

    def test_cut_off_while_thinking(self):
        assert reason(finish_reason="length", thinking_unfinished=True) == "cut_off_thinking"

    def test_cut_off_after_thinking_ended_is_not_escalated(self):
        assert reason(finish_reason="length", thinking_unfinished=False) is None

    def test_cut_off_thinking_can_be_turned_off(self):
        assert (
            reason(config(on_cut_off_thinking=False), finish_reason="length", thinking_unfinished=True)
            is None
        )

    def test_looping(self):
        assert reason(text="Let me check again. " * 30) == "looping"

    def test_cut_off_thinking_is_reported_before_the_others(self):
        got = reason(mean_logprob=-5.0, finish_reason="length", thinking_unfinished=True, text="again " * 100)
        assert got == "cut_off_thinking"
        assert reason(mean_logprob=-5.0, text="again " * 100) == "looping"


def decision(size: str) -> RouteDecision:
    return RouteDecision(size=size, difficulty=0.5, reason="t1<score<=t2", thinking=False, scorer="features")


def router(served, enabled=True) -> Router:
    cfg = RouterConfig(enabled=True, escalation=EscalationConfig(enabled=enabled))
    return Router(cfg, served, scorer=FeatureScorer())


def ask(r: Router, size: str, **kwargs):
    kwargs = {
        "mean_logprob": -3.0,
        "token_logprobs": [-4.0] * 20,  # every token at p = 0.018: under the default quantile rule
        "finish_reason": "stop",
        "thinking_unfinished": False,
        "completion_text": PROSE,
        **kwargs,
    }
    return r.escalation(decision(size), **kwargs)


def test_router_escalates_a_small_size():
    r = router(("0.8b", "2b", "4b", "9b"))
    assert ask(r, "0.8b") == "low_confidence"
    assert r.next_size_up("0.8b") == "2b"


def test_router_never_escalates_the_largest_served_size():
    assert ask(router(("0.8b", "2b", "4b", "9b")), "9b") is None
    assert ask(router(("0.8b", "2b")), "2b") is None


def test_router_with_escalation_off_returns_none():
    assert ask(router(("0.8b", "2b"), enabled=False), "0.8b") is None
