"""The 2PL item-response fit: it recovers simulated abilities and difficulties, and places a model on
the fitted scale from an accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.router_training.irt import ability_for_accuracy, fit_irt, place_sizes

pytestmark = pytest.mark.unit


def simulated(seed: int = 0, items: int = 400, models: int = 12):
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1.5, 1.5, models)
    b = rng.normal(0.0, 1.2, items)
    a = np.exp(rng.normal(0.0, 0.3, items))
    p = 1 / (1 + np.exp(-a[:, None] * (theta[None, :] - b[:, None])))
    y = (rng.random(p.shape) < p).astype(int)
    answers = [(f"q{i:03d}", f"m{j:02d}", int(y[i, j])) for i in range(items) for j in range(models)]
    return answers, theta, b


def test_fit_recovers_order_of_abilities_and_difficulties():
    answers, theta, b = simulated()
    fit = fit_irt(answers)
    assert np.corrcoef(fit.ability, theta)[0, 1] > 0.97
    assert np.corrcoef(fit.difficulty, b)[0, 1] > 0.85
    assert (fit.discrimination > 0).all()
    assert list(fit.abilities()) == [f"m{j:02d}" for j in range(12)]


def test_ability_for_accuracy_inverts_the_expected_accuracy():
    fit = fit_irt(simulated(1, items=200, models=8)[0])
    index = np.arange(len(fit.items))
    theta = ability_for_accuracy(fit, index, 0.6)
    assert fit.probability(theta, index).mean() == pytest.approx(0.6, abs=1e-6)
    placed = place_sizes(fit, index, {"small": 0.3, "large": 0.8})
    assert placed["small"] < placed["large"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no answers"):
        fit_irt([])
    with pytest.raises(ValueError, match="0 or 1"):
        fit_irt([("q", "m", 2)])
    fit = fit_irt([("q", "m", 1), ("q", "n", 0)])
    with pytest.raises(ValueError, match="strictly between"):
        ability_for_accuracy(fit, np.arange(1), 1.0)
