"""The routing policy: scores -> size (expected quality or thresholds, served sizes, capacity) and
thinking on/off.

Pure logic, no I/O: the ingress and the batch jobs give it a score and, when they know it, each
size's capacity; it answers with a `RouteDecision` whose `reason` says why, in a short
machine-friendly form (comma-joined steps, e.g. `quality,capacity_up:no_replica` or
`t1<score<=t2`), and whose `detail` names the task family and the per-size estimates that decided.

Policy `quality` (the default): every served size's P(correct) is estimated from the request's
task-group and level probabilities (quality.py) and the request goes to the smallest served size
within `quality_tolerance` of the best one, after the calibrated `size_bias` offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.catalog import CATALOG, SIZES, ModelSize
from cluster.router_config import RouterConfig
from deployments.router.quality import QualityTable, choose_size, structure_factors

BAND_REASONS = ("score<=t1", "t1<score<=t2", "t2<score<=t3", "score>t3")


@dataclass(frozen=True)
class SizeCapacity:
    """What the caller knows about one size's capacity right now."""

    ready_replicas: int
    queue_full: bool = False

    @property
    def shortage(self) -> str | None:
        """Why this size cannot take a request now (`no_replica`, `queue_full`), or None if it can."""
        if self.ready_replicas <= 0:
            return "no_replica"
        if self.queue_full:
            return "queue_full"
        return None


@dataclass(frozen=True)
class RouteDecision:
    """Where one request goes, and why."""

    size: ModelSize
    difficulty: float
    reason: str
    thinking: bool
    scorer: str
    features: dict[str, float] = field(default_factory=dict)
    family: str | None = None
    estimates: dict[str, float] = field(default_factory=dict)
    structure: tuple[str, ...] = ()  # the structure signals the estimates include (tools, ...)
    # The scorer's own estimates before a calibration artifact (router.reload) mapped them; empty
    # without one. Label records keep them, so a refit starts from the scorer, not from itself.
    raw_estimates: dict[str, float] = field(default_factory=dict)

    @property
    def detail(self) -> str:
        """The family and per-size estimates behind the decision, e.g.
        `family=maths;p=0.8b:0.21/2b:0.43/4b:0.71/9b:0.80`; empty when the policy had none."""
        parts = []
        if self.family:
            parts.append(f"family={self.family}")
        if self.estimates:
            parts.append("p=" + "/".join(f"{s}:{p:.2f}" for s, p in self.estimates.items()))
        return ";".join(parts)


def order_sizes(sizes: Sequence[ModelSize]) -> tuple[ModelSize, ...]:
    """`sizes` without repeats, smallest first.

    Raises:
        ValueError: for an empty list or an unknown size.
    """
    unknown = [s for s in sizes if s not in CATALOG]
    if unknown:
        raise ValueError(f"unknown sizes {unknown}; valid: {', '.join(SIZES)}")
    ordered = tuple(s for s in SIZES if s in set(sizes))
    if not ordered:
        raise ValueError("at least one served size is needed")
    return ordered


class RoutingPolicy:
    """Thresholds, served sizes, capacity fallback and the thinking rule of one router.

    Args:
        config: the router section of the cluster config.
        served_sizes: the sizes that exist; decisions only ever name one of them.
    """

    def __init__(
        self, config: RouterConfig, served_sizes: Sequence[ModelSize], quality: QualityTable | None = None
    ):
        self.config = config
        self.served = order_sizes(served_sizes)
        self.quality = quality
        self.thinking_min_difficulty = self._thinking_min_difficulty()

    def band(self, difficulty: float) -> int:
        """Index of the size the thresholds give (0 = 0.8b ... 3 = 9b)."""
        return sum(1 for threshold in self.config.thresholds if difficulty > threshold)

    def nearest_served(self, size: ModelSize) -> ModelSize:
        """`size` if served, else the served size nearest to it in the family order (ties go up)."""
        if size in self.served:
            return size
        wanted = SIZES.index(size)
        return min(self.served, key=lambda s: (abs(SIZES.index(s) - wanted), SIZES.index(s) < wanted))

    def next_size_up(self, size: ModelSize) -> ModelSize | None:
        """The smallest served size larger than `size`, or None."""
        return next((s for s in self.served if SIZES.index(s) > SIZES.index(size)), None)

    def size_for(self, difficulty: float) -> tuple[ModelSize, list[str]]:
        """The served size for a difficulty and the reason steps that led there."""
        band = self.band(difficulty)
        reasons = [BAND_REASONS[band]]
        size = self.nearest_served(SIZES[band])
        if size != SIZES[band]:
            reasons.append(f"not_served:{SIZES[band]}")
        return size, reasons

    def with_capacity(
        self, size: ModelSize, capacity: Mapping[ModelSize, SizeCapacity] | None
    ) -> tuple[ModelSize, str | None]:
        """Move off a size that cannot take the request now, per `capacity_fallback`.

        Sizes missing from `capacity` count as available. When no size in the fallback direction
        has capacity, the choice stays (Serve queues it, or scales the size up from zero).

        Returns:
            The size to use and the reason step (`capacity_up:no_replica`, `capacity_none:queue_full`,
            ...), or None when the size was fine.
        """
        if capacity is None or size not in capacity:
            return size, None
        shortage = capacity[size].shortage
        if shortage is None:
            return size, None
        direction = self.config.capacity_fallback
        if direction == "off":
            return size, f"capacity_off:{shortage}"
        index = SIZES.index(size)
        if direction == "up":
            candidates = [s for s in self.served if SIZES.index(s) > index]
        else:
            candidates = [s for s in reversed(self.served) if SIZES.index(s) < index]
        for candidate in candidates:
            if candidate not in capacity or capacity[candidate].shortage is None:
                return candidate, f"capacity_{direction}:{shortage}"
        return size, f"capacity_none:{shortage}"

    def thinking(self, difficulty: float, size: ModelSize, requested: bool | None) -> bool:
        """Thinking on or off; an explicit request always wins."""
        if requested is not None:
            return requested
        mode = self.config.thinking.mode
        if mode == "always":
            return True
        if mode == "never":
            return False
        if mode == "size_default":
            return CATALOG[size].thinking_default
        return difficulty >= self.thinking_min_difficulty

    def estimates(
        self, levels: Sequence[float], groups: Mapping[str, float] | None, structure: Sequence[str] = ()
    ) -> dict[ModelSize, float]:
        """Estimated P(correct) of each served size (empty without a quality table or levels);
        `structure` signals multiply in what they need as well (`quality.structure_factors`)."""
        if self.quality is None or not levels:
            return {}
        every = self.quality.estimate(groups or {}, levels)
        if structure:
            weights = self.config.structure_weights.model_dump()
            factors = structure_factors(self.quality, levels, structure, weights)
            every = {s: every[s] * factors[s] for s in every}
        return {s: round(every[s], 4) for s in self.served}

    def decide(
        self,
        difficulty: float,
        *,
        scorer: str,
        features: dict[str, float] | None = None,
        requested_thinking: bool | None = None,
        capacity: Mapping[ModelSize, SizeCapacity] | None = None,
        levels: Sequence[float] = (),
        groups: Mapping[str, float] | None = None,
        family: str | None = None,
        estimates: Mapping[ModelSize, float] | None = None,
        structure: Sequence[str] = (),
    ) -> RouteDecision:
        """The full decision for a scored request.

        Args:
            difficulty: the score on [0, 1] (what policy `thresholds` cuts).
            scorer: the scorer's name, for the decision.
            features: the cues behind the score.
            requested_thinking: the request's explicit thinking switch, which always wins.
            capacity: each size's capacity, when known.
            levels: difficulty-level probabilities (policy `quality`).
            groups: task-group probabilities (policy `quality`).
            family: the most likely task family, for the reason.
            estimates: per-size P(correct) already computed (a re-decision, or the difficulty scorer's
                item-response curve); wins over levels.
            structure: the request's structure signals (`RoutingInput.structure`); policy `quality`
                multiplies in what they need and names them in the reason (`quality+tools`).
        """
        difficulty = min(1.0, max(0.0, float(difficulty)))
        chosen = dict(estimates) if estimates else {}
        if not chosen and self.config.policy == "quality":
            chosen = self.estimates(levels, groups, structure)
        if self.config.policy == "quality" and chosen:
            size = choose_size(chosen, self.served, self.config.quality_tolerance, self.config.size_bias)
            reasons = ["+".join(["quality", *structure])]
        else:
            size, reasons = self.size_for(difficulty)
        size, capacity_reason = self.with_capacity(size, capacity)
        if capacity_reason:
            reasons.append(capacity_reason)
        return RouteDecision(
            size=size,
            difficulty=difficulty,
            reason=",".join(reasons),
            thinking=self.thinking(difficulty, size, requested_thinking),
            scorer=scorer,
            features=dict(features or {}),
            family=family,
            estimates=chosen,
            structure=tuple(structure),
        )

    def disabled(self, requested_thinking: bool | None = None) -> RouteDecision:
        """The decision while routing is off: the fallback size (nearest served), its default thinking."""
        size = self.nearest_served(self.config.fallback_size)
        thinking = CATALOG[size].thinking_default if requested_thinking is None else requested_thinking
        return RouteDecision(
            size=size, difficulty=0.0, reason="router_disabled", thinking=thinking, scorer="none"
        )

    def _thinking_min_difficulty(self) -> float:
        configured = self.config.thinking.min_difficulty
        if configured is not None:
            return configured
        # The score from which the thresholds send requests to the first size that thinks by default.
        first = next((i for i, size in enumerate(SIZES) if CATALOG[size].thinking_default), None)
        if first is None:
            return float("inf")
        return 0.0 if first == 0 else self.config.thresholds[first - 1]
