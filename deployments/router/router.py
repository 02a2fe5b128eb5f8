"""The router object the ingress and the batch jobs hold: a scorer, a quality table and a policy,
built from config.

Construction loads the learned artifact and the embedding model once (slow, seconds); `route` is
the per-request call (fast). Nothing is global, so a Serve replica or a Ray Data actor builds its own
from the config alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from cluster.catalog import ModelSize
from cluster.router_config import RouterConfig
from deployments.engines.base import ChatMessage
from deployments.router import agreement
from deployments.router.calibration import Calibration
from deployments.router.escalation import applied_min_token_prob, escalation_reason
from deployments.router.policy import RouteDecision, RoutingPolicy, SizeCapacity
from deployments.router.quality import QualityTable, prior_table
from deployments.router.routing_input import RoutingInput, from_request
from deployments.router.score_result import Scorer, ScoreResult
from deployments.router.scorers import build_scorer


def quality_table(config: RouterConfig, scorer: Scorer | None) -> QualityTable:
    """The table of P(correct | group, level, size): the learned artifact's label-refined one when
    it has one, else the model-card priors."""
    artifact = getattr(scorer, "artifact", None) or getattr(
        getattr(scorer, "learned", None), "artifact", None
    )
    refined = getattr(artifact, "quality", None)
    return refined if refined is not None else prior_table(config.priors_path)


class Router:
    """Scores requests for `model: auto` and decides their size, thinking and escalation.

    Args:
        config: the router section of the cluster config.
        served_sizes: the sizes that are deployed; decisions only name these.
        scorer: the scorer to use; None builds the one `config` names (not built while routing is off).
    """

    def __init__(self, config: RouterConfig, served_sizes: Sequence[ModelSize], scorer: Scorer | None = None):
        self.config = config
        self.scorer: Scorer | None = (
            scorer if scorer is not None else (build_scorer(config) if config.enabled else None)
        )
        self.policy = RoutingPolicy(config, served_sizes, quality=quality_table(config, self.scorer))
        # Swapped whole by the reloader (one attribute store, so a request sees the old or the new).
        self.calibration: Calibration | None = None

    @property
    def served_sizes(self) -> tuple[ModelSize, ...]:
        """The served sizes, smallest first."""
        return self.policy.served

    def score(self, request: RoutingInput) -> ScoreResult:
        """The scorer's result for one request.

        Raises:
            RuntimeError: when the router was built with routing off and no scorer.
        """
        if self.scorer is None:
            raise RuntimeError("this router has no scorer: routing is off in its config")
        return self.scorer.score(request)

    def warm_up(self) -> None:
        """Score one request, so the first real one does not pay for the scorer's first run: the
        traced embedding graph is optimised on its first call (22 ms once, then 3.5 ms, measured)."""
        if self.scorer is not None:
            self.score(from_request([ChatMessage(role="user", content="Hello")], None))

    def route(
        self,
        messages: list[ChatMessage] | None = None,
        prompt: str | None = None,
        *,
        requested_thinking: bool | None = None,
        capacity: Mapping[ModelSize, SizeCapacity] | None = None,
        structure: Sequence[str] = (),
    ) -> RouteDecision:
        """Decide where a chat (`messages`) or completion (`prompt`) request for `auto` goes.

        Args:
            messages: the chat, for chat completions.
            prompt: the prompt, for completions.
            requested_thinking: the request's explicit `enable_thinking`, which always wins.
            capacity: what the caller knows of each size's readiness; sizes left out count as ready.
            structure: the request's structure signals (`tools`, `structured`).
        """
        if not self.config.enabled:
            return self.policy.disabled(requested_thinking)
        return self.decide(
            from_request(messages, prompt, structure),
            requested_thinking=requested_thinking,
            capacity=capacity,
        )

    def decide(
        self,
        request: RoutingInput,
        *,
        requested_thinking: bool | None = None,
        capacity: Mapping[ModelSize, SizeCapacity] | None = None,
    ) -> RouteDecision:
        """Score an already reduced request and apply the policy (routing on or off alike)."""
        result = self.score(request)
        return self._decide(
            result, request.structure, requested_thinking=requested_thinking, capacity=capacity
        )

    def _decide(
        self,
        result: ScoreResult,
        structure: Sequence[str] = (),
        *,
        requested_thinking: bool | None = None,
        capacity: Mapping[ModelSize, SizeCapacity] | None = None,
    ) -> RouteDecision:
        calibration = self.calibration
        # A scorer that models P(correct) per size itself (the difficulty scorer) hands its estimates
        # over; otherwise the policy derives them from the level and group probabilities.
        scorer_estimates = {s: p for s, p in result.estimates.items() if s in self.policy.served}
        raw: dict[str, float] = {}
        calibrated = None
        if calibration is not None and self.config.policy == "quality":
            raw = scorer_estimates or self.policy.estimates(result.levels, result.groups, structure)
            calibrated = calibration.apply(raw, result.difficulty) if raw else None
        decision = self.policy.decide(
            result.difficulty,
            scorer=self.scorer.name if self.scorer else "none",
            features=result.features,
            requested_thinking=requested_thinking,
            capacity=capacity,
            levels=result.levels,
            groups=result.groups,
            family=result.family,
            estimates=calibrated or scorer_estimates,
            structure=structure,
        )
        return dataclasses.replace(decision, raw_estimates=raw) if raw else decision

    @property
    def scorer_name(self) -> str:
        """The running scorer's name (`none` while routing is off)."""
        return self.scorer.name if self.scorer else "none"

    def redecide(
        self,
        decision: RouteDecision,
        *,
        requested_thinking: bool | None = None,
        capacity: Mapping[ModelSize, SizeCapacity] | None = None,
    ) -> RouteDecision:
        """Apply the policy again to an earlier decision's score with new capacity, without scoring
        again (for a size that turned out full after the first decision)."""
        if decision.reason == "router_disabled":
            return decision
        return self.policy.decide(
            decision.difficulty,
            scorer=decision.scorer,
            features=decision.features,
            requested_thinking=requested_thinking,
            capacity=capacity,
            family=decision.family,
            estimates=decision.estimates,
            structure=decision.structure,
        )

    def decide_many(self, requests: Sequence[RoutingInput]) -> list[RouteDecision]:
        """Decisions for many requests, batching the embedding model when the scorer can."""
        if self.scorer is None:
            raise RuntimeError("this router has no scorer: routing is off in its config")
        score_many = getattr(self.scorer, "score_many", None)
        results = score_many(requests) if score_many else [self.scorer.score(r) for r in requests]
        pairs = zip(results, requests, strict=True)
        return [self._decide(result, request.structure) for result, request in pairs]

    def escalation(
        self,
        decision: RouteDecision,
        *,
        mean_logprob: float | None,
        finish_reason: str,
        thinking_unfinished: bool,
        completion_text: str,
        token_logprobs: Sequence[float] = (),
    ) -> str | None:
        """The reason to ask again one size up (`low_confidence`, `cut_off_thinking`, `looping`), or
        None; None as well when escalation is off or the size is already the largest served."""
        if self.next_size_up(decision.size) is None:
            return None
        calibration = self.calibration  # read once: the reloader may swap it meanwhile
        return escalation_reason(
            self.config.escalation,
            mean_logprob=mean_logprob,
            finish_reason=finish_reason,
            thinking_unfinished=thinking_unfinished,
            completion_text=completion_text,
            token_logprobs=token_logprobs,
            artifact=calibration.escalation if calibration is not None else None,
        )

    @property
    def min_token_prob(self) -> float | None:
        """The low-confidence threshold in force now: the calibration artifact's where
        `escalation.threshold_from_artifact` lets it apply, else the configured one."""
        calibration = self.calibration
        artifact = calibration.escalation if calibration is not None else None
        return applied_min_token_prob(self.config.escalation, artifact)

    def second_sample_kind(self, decision: RouteDecision, text: str) -> str | None:
        """With `escalation.disagreement` on: how a second sample of this answer would be compared
        (`json`, `choice`, `numeric`, `exact`), or None when no second sample is wanted (rule off,
        answer not verifiable, nothing larger to escalate to)."""
        rule = self.config.escalation
        if not (rule.enabled and rule.disagreement) or self.next_size_up(decision.size) is None:
            return None
        kind = agreement.verifiable_kind(text)
        return None if kind == "none" else kind

    @staticmethod
    def samples_disagree(kind: str, first: str, second: str) -> bool:
        """Whether two samples of one size disagree under `kind` (a reason to escalate)."""
        return agreement.agree(kind, second, first) is False

    def next_size_up(self, size: ModelSize) -> ModelSize | None:
        """The smallest served size larger than `size`, or None."""
        return self.policy.next_size_up(size)


def build_router(config: RouterConfig, served_sizes: Sequence[ModelSize]) -> Router:
    """Build the router a cluster config describes (loads models when the scorer needs them).

    Raises:
        ValueError: for no or unknown served sizes.
        FileNotFoundError: when the learned scorer's artifact is missing.
    """
    return Router(config, served_sizes)
