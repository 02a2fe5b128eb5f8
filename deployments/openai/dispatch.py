"""Send one generation to a model size: explicit or routed, with capacity fallback and escalation.

- An explicit size goes there as asked.
- `auto` asks the router, giving it the ingress's view of each size's capacity; if the chosen size
  still answers "queue full" (Serve back-pressure), the router is asked once more with that size
  marked full, and the request goes where it says.
- A non-streamed `auto` answer that the router judges weak (low confidence, cut off while thinking,
  looping) is asked again one size up, once.
Every step is recorded in `Route.routing`, which becomes response headers and the `routing` field.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cluster.config import AUTO_MODEL, ClusterConfig, ModelConfig
from deployments.engines.base import ChatMessage, EngineOverloadedError, GenerationDelta, GenerationRequest
from deployments.metrics import ServingMetrics
from deployments.model_server import GenerationResult
from deployments.openai.capacity import CapacityTracker
from deployments.openai.protocol import OpenAIError
from deployments.openai.reasoning import THINK_END
from deployments.router import RouteDecision, SizeCapacity


class ModelClient(Protocol):
    """How the ingress reaches one model size (a Serve handle, or a server in process)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...


class LocalModelClient:
    """A `ModelServer` in this process (tests, single-process tools)."""

    def __init__(self, server):
        self.server = server

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.server.generate(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        return self.server.generate_stream(request)


@dataclass
class Route:
    """Where a request goes and the record of why."""

    model: ModelConfig
    thinking: bool | None
    routing: dict[str, Any]
    decision: RouteDecision | None = None
    messages: list[ChatMessage] | None = None
    prompt: str | None = None

    @property
    def thinking_on(self) -> bool:
        """The thinking mode the model will actually use."""
        return self.model.spec.thinking_default if self.thinking is None else self.thinking


@dataclass
class OpenStream:
    """A stream whose first delta has arrived (so request errors were already raised)."""

    route: Route
    started: float
    first: GenerationDelta
    rest: AsyncIterator[GenerationDelta]


def is_backpressure(error: BaseException) -> bool:
    """Whether `error` (possibly wrapped by Ray) means the size's queue is full."""
    from ray.serve.exceptions import BackPressureError

    from deployments.openai.errors import unwrap_error

    return isinstance(unwrap_error(error), (BackPressureError, EngineOverloadedError))


class Dispatcher:
    """Chooses sizes and calls them.

    Args:
        config: the cluster config.
        clients: a `ModelClient` per served size.
        router: the difficulty router for `auto`.
        capacity: this ingress replica's capacity view.
        metrics: route counters; None records nothing.
    """

    def __init__(
        self,
        config: ClusterConfig,
        clients: Mapping[str, ModelClient],
        router,
        capacity: CapacityTracker,
        metrics: ServingMetrics | None = None,
    ):
        self.config = config
        self.clients = dict(clients)
        self.router = router
        self.capacity = capacity
        self.metrics = metrics
        self.timeout_s = config.serving.ingress.request_timeout_s

    # ---- choosing ------------------------------------------------------------------------------
    def choose(
        self,
        requested: str | None,
        *,
        messages: list[ChatMessage] | None = None,
        prompt: str | None = None,
        thinking: bool | None = None,
    ) -> Route:
        """The route for a request naming `requested` (or the default model).

        Raises:
            OpenAIError: 404 for a model that is not served.
        """
        name = requested or self.config.serving.default_model
        if name == AUTO_MODEL:
            decision = self.router.route(
                messages=messages,
                prompt=prompt,
                requested_thinking=thinking,
                capacity=self.capacity.snapshot(),
            )
            return self._routed(decision, thinking, messages, prompt)
        model = self.config.model_by_name(name)
        if model is None:
            served = [m.public_name for m in self.config.enabled_models()] + [AUTO_MODEL]
            raise OpenAIError(
                404,
                f"the model {name!r} does not exist; served: {', '.join(served)}",
                param="model",
                code="model_not_found",
            )
        routing = {"model": model.public_name, "difficulty": None, "reason": "explicit", "scorer": None}
        return Route(model, thinking, routing, messages=messages, prompt=prompt)

    def _routed(self, decision: RouteDecision, requested_thinking: bool | None, messages, prompt) -> Route:
        model = self.config.model_by_name(decision.size)
        thinking = decision.thinking if requested_thinking is None else requested_thinking
        if prompt is not None:
            thinking = False  # raw completions have no chat template, hence no thinking block
        routing = {
            "model": model.public_name,
            "difficulty": round(decision.difficulty, 4),
            "reason": decision.reason,
            "scorer": decision.scorer,
            "thinking": thinking,
        }
        if self.metrics:
            self.metrics.record_route(model.public_name, decision.reason)
        return Route(model, thinking, routing, decision=decision, messages=messages, prompt=prompt)

    def _reroute_full(self, route: Route, requested_thinking: bool | None) -> Route | None:
        """Ask the router again with the chosen size marked full; None if it stays put."""
        if route.decision is None:
            return None
        capacity = self.capacity.snapshot()
        current = capacity.get(route.model.size, SizeCapacity(ready_replicas=1))
        capacity[route.model.size] = SizeCapacity(ready_replicas=current.ready_replicas, queue_full=True)
        decision = self.router.redecide(
            route.decision, requested_thinking=requested_thinking, capacity=capacity
        )
        if decision.size == route.model.size:
            return None
        return self._routed(decision, requested_thinking, route.messages, route.prompt)

    # ---- calling -------------------------------------------------------------------------------
    async def generate(
        self, route: Route, request: GenerationRequest, requested_thinking: bool | None = None
    ) -> tuple[GenerationResult, Route]:
        """A whole answer, after capacity fallback and at most one escalation."""
        try:
            result = await self._generate_on(route, request)
        except Exception as error:
            if not is_backpressure(error) or (other := self._reroute_full(route, requested_thinking)) is None:
                raise
            route, request = other, self._for_route(request, other)
            result = await self._generate_on(route, request)
        return await self._maybe_escalate(route, request, result)

    def _admit(self, size: str) -> None:
        """Refuse at once when this replica already has the size's share of work in flight.

        Rejecting here is cheap and immediate; letting the request reach Serve's handle queue first
        would park it in the handle's retry back-off (seconds under overload) before a 429.
        """
        if self.capacity.in_flight[size] >= self.capacity.limit(size):
            raise EngineOverloadedError(f"{size} has {self.capacity.in_flight[size]} requests in flight")

    async def _generate_on(self, route: Route, request: GenerationRequest) -> GenerationResult:
        self._admit(route.model.size)
        with self.capacity.track(route.model.size):
            return await asyncio.wait_for(self.clients[route.model.size].generate(request), self.timeout_s)

    async def _maybe_escalate(
        self, route: Route, request: GenerationRequest, result: GenerationResult
    ) -> tuple[GenerationResult, Route]:
        if route.decision is None:
            return result, route
        reason = self.router.escalation(
            route.decision,
            mean_logprob=result.mean_logprob,
            finish_reason=result.finish_reason,
            thinking_unfinished=route.thinking_on
            and result.finish_reason == "length"
            and THINK_END not in result.text,
            completion_text=result.text,
        )
        bigger = self.router.next_size_up(route.model.size) if reason else None
        if bigger is None:
            return result, route
        first_model = route.model.public_name
        model = self.config.model_by_name(bigger)
        routing = dict(
            route.routing,
            model=model.public_name,
            reason=f"{route.routing['reason']},escalated:{reason}",
            escalated_from=first_model,
            escalation_reason=reason,
            first_attempt_usage={
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
            },
        )
        escalated = dataclasses.replace(route, model=model, routing=routing)
        if self.metrics:
            self.metrics.record_route(model.public_name, f"escalated:{reason}")
        retry = self._for_route(request, escalated)
        return await self._generate_on(escalated, retry), escalated

    async def open_stream(
        self, route: Route, request: GenerationRequest, requested_thinking: bool | None = None
    ) -> OpenStream:
        """Start streaming and wait for the first delta (capacity fallback included)."""
        try:
            return await self._open_on(route, request)
        except Exception as error:
            if not is_backpressure(error) or (other := self._reroute_full(route, requested_thinking)) is None:
                raise
            return await self._open_on(other, self._for_route(request, other))

    async def _open_on(self, route: Route, request: GenerationRequest) -> OpenStream:
        self._admit(route.model.size)
        loop = asyncio.get_running_loop()
        started = loop.time()
        iterator = self.clients[route.model.size].stream(request).__aiter__()
        first = await asyncio.wait_for(iterator.__anext__(), self.timeout_s)
        return OpenStream(route, started, first, self._tracked(route.model.size, iterator))

    async def _tracked(
        self, size: str, iterator: AsyncIterator[GenerationDelta]
    ) -> AsyncIterator[GenerationDelta]:
        with self.capacity.track(size):
            async for delta in iterator:
                yield delta

    @staticmethod
    def _for_route(request: GenerationRequest, route: Route) -> GenerationRequest:
        """The same request re-addressed (a new id; the route's thinking mode)."""
        return dataclasses.replace(
            request,
            request_id=request.request_id + "-" + route.model.size,
            enable_thinking=route.thinking if request.prompt is None else None,
        )
