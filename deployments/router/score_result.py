"""What every scorer returns: a difficulty, the task-group and level estimates, and the cues behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from deployments.router.routing_input import RoutingInput


@dataclass(frozen=True)
class ScoreResult:
    """One request's scores.

    Attributes:
        difficulty: the expected difficulty level on [0, 1] (level k's band is [k/4, (k+1)/4]).
        features: the transparent features (and head outputs) behind the score.
        levels: probabilities of difficulty levels 0 (trivial) .. 3 (hard); empty when unknown.
        groups: probabilities of the task groups of the quality table; empty when unknown.
        family: the most likely task family (or group, for the feature scorer), for reasons and metrics.
        estimates: P(correct) per size when the scorer computes it itself (the difficulty scorer's
            item-response curve); empty leaves it to the policy's quality table.
    """

    difficulty: float
    features: dict[str, float] = field(default_factory=dict)
    levels: tuple[float, ...] = ()
    groups: dict[str, float] = field(default_factory=dict)
    family: str | None = None
    estimates: dict[str, float] = field(default_factory=dict)


class Scorer(Protocol):
    """Anything that scores a request."""

    name: str

    def score(self, request: RoutingInput) -> ScoreResult:
        """The request's scores."""
        ...
