"""Send one generation to a model size: explicit or routed, with capacity fallback and escalation.

- An explicit size goes there as asked.
- `auto` asks the router, giving it the ingress's view of each size's capacity; if the chosen size
  still answers "queue full" (Serve back-pressure), the router is asked once more with that size
  marked full, and the request goes where it says.
- A non-streamed `auto` answer that the router judges weak (low confidence, cut off while thinking,
  looping) is asked again one size up, once.
Every step is recorded in `Route.routing`, which becomes response headers and the `routing` field.

Admission: a request takes its size's slot before any call and holds it to its last byte (a stream
until it ends or its client goes), so streams cannot pass the limit while waiting for a first token.
A replica that dies under a request is retried once (not streamed, or streamed before its first
delta); past that the error is a retryable 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cluster.config import AUTO_MODEL, ClusterConfig, ModelConfig
from deployments.engines.base import ChatMessage, EngineOverloadedError, GenerationDelta, GenerationRequest
from deployments.metrics import ServingMetrics
from deployments.model_server import GenerationResult
from deployments.openai.capacity import CapacityTracker, Slot
from deployments.openai.errors import is_replica_lost, unwrap_error
from deployments.openai.protocol import OpenAIError
from deployments.openai.reasoning import THINK_END
from deployments.router import RouteDecision, SizeCapacity


class ModelClient(Protocol):
    """How the ingress reaches one model size (a Serve handle, or a server in process)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...


class LocalModelClient:
    """A `ModelServer` in this process (the one-size deployment, tests, single-process tools)."""

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
    """A stream whose first delta has arrived (so request errors were already raised).

    It holds its admission slot until `close` (called when the response ends, however it ends).
    """

    route: Route
    started: float
    first: GenerationDelta
    rest: AsyncIterator[GenerationDelta]
    slot: Slot | None = None
    source: AsyncIterator[GenerationDelta] | None = None  # the model's own stream, under `rest`
    finished: bool = False

    async def close(self) -> None:
        """Free the slot and stop the model's generation unless it ended (idempotent)."""
        if self.slot is not None:
            self.slot.release()
        aclose = getattr(self.rest, "aclose", None)
        if aclose is not None:
            await aclose()
        if not self.finished and self.source is not None:
            self.finished = True
            await _close_quietly(self.source)


def is_backpressure(error: BaseException) -> bool:
    """Whether `error` (possibly wrapped by Ray) means the size's queue is full."""
    from ray.serve.exceptions import BackPressureError

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
        structure: Sequence[str] = (),
    ) -> Route:
        """The route for a request naming `requested` (or the default model); `structure` is the
        request's shape (`tools`, `structured`), a signal for the router.

        Raises:
            OpenAIError: 404 for a model that is not served.
        """
        name = self._name(requested)
        if name == AUTO_MODEL:
            decision = self.router.route(
                messages=messages,
                prompt=prompt,
                requested_thinking=thinking,
                capacity=self.capacity.snapshot(),
                structure=structure,
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

    def _name(self, requested: Any) -> Any:
        """The model a request asks for: its `model` field, or the default model when that is empty."""
        return requested or self.config.serving.default_model

    def named_model(self, requested: Any) -> ModelConfig | None:
        """The served model a request's `model` field (not yet validated) names; None for `auto` (the
        router decides), a name that is not served, or a value that is not a name (validation
        answers those)."""
        name = self._name(requested)
        if not isinstance(name, str) or name == AUTO_MODEL:
            return None
        model = self.config.model_by_name(name)
        return model if model is not None and model.size in self.capacity.models else None

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
            "family": decision.family,
            "estimates": decision.estimates,
        }
        if self.metrics:
            self.metrics.record_route(model.public_name, decision.reason, decision.family)
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
        """A whole answer, after capacity fallback, one retry on a lost replica, and at most one
        escalation."""
        try:
            result = await self._generate_on(route, request)
        except Exception as error:
            if is_replica_lost(error):
                request = dataclasses.replace(request, request_id=request.request_id + "-retry")
                result = await self._retry_lost(self._generate_on(route, request))
            elif is_backpressure(error) and (other := self._reroute_full(route, requested_thinking)):
                route, request = other, self._for_route(request, other)
                result = await self._generate_on(route, request)
            else:
                raise
        return await self._maybe_escalate(route, request, result)

    async def _retry_lost(self, attempt):
        """Await the one retry after a lost replica; a second loss is a retryable 503."""
        try:
            return await attempt
        except Exception as error:
            if is_replica_lost(error):
                raise OpenAIError(
                    503,
                    "the model replica serving this request went away; retry shortly",
                    code="replica_unavailable",
                    headers={"Retry-After": str(self.config.serving.ingress.retry_after_s)},
                ) from error
            raise

    async def _admit(self, size: str) -> Slot:
        """Take a slot of `size`: at once, after waiting in this replica's line while the size is
        full, or a 429 at once when the line is full too.

        The line is the ingress's own (`CapacityTracker.acquire`): letting the request reach Serve's
        handle queue instead would park it in the handle's retry back-off (seconds under overload).
        """
        return await self.capacity.acquire(size)

    def _not_ready(self, size: str) -> bool:
        ready = self.capacity.ready
        return ready is not None and ready.get(size, 1) < 1

    def _deadline(self, size: str) -> float:
        """Seconds a call to `size` may take: longer while it has no ready replica (cold start)."""
        if self._not_ready(size):
            return self.timeout_s + self.config.serving.ingress.cold_start_timeout_s
        return self.timeout_s

    async def _within_deadline(self, size: str, call):
        """Await `call` within `size`'s deadline; running out while the size has no ready replica
        (it never came up: node lost, no capacity) is a retryable 503, not a time-out."""
        try:
            return await asyncio.wait_for(call, self._deadline(size))
        except asyncio.TimeoutError:
            if self._not_ready(size):
                raise OpenAIError(
                    503,
                    f"{self.config.model_by_name(size).public_name} has no ready replica; retry shortly",
                    code="model_unavailable",
                    headers={"Retry-After": str(self.config.serving.ingress.retry_after_s)},
                ) from None
            raise

    async def _generate_on(self, route: Route, request: GenerationRequest) -> GenerationResult:
        size = route.model.size

        async def admitted() -> GenerationResult:
            with await self._admit(size):
                return await self.clients[size].generate(request)

        self.capacity.refuse_if_full(size)  # a 429 before any task is made
        # The request's deadline covers its wait for a slot too.
        return await self._within_deadline(size, admitted())

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
            token_logprobs=result.logprobs,
        )
        if reason is None and (kind := self.router.second_sample_kind(route.decision, result.text)):
            # Disagreement between two cheap samples (seed + 1) of a verifiable answer.
            seed = (request.sampling.seed or 0) + 1
            second = await self._generate_on(
                route,
                dataclasses.replace(
                    request,
                    request_id=request.request_id + "-second",
                    sampling=dataclasses.replace(request.sampling, seed=seed),
                ),
            )
            route.routing["second_sample_tokens"] = second.completion_tokens
            if self.router.samples_disagree(kind, result.text, second.text):
                reason = "disagreement"
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
        """Start streaming and wait for the first delta (capacity fallback and one retry on a lost
        replica included). The caller must `close` the stream when its response ends."""
        try:
            return await self._open_on(route, request)
        except Exception as error:
            if is_replica_lost(error):  # nothing was sent yet: the retry is invisible to the client
                retry = dataclasses.replace(request, request_id=request.request_id + "-retry")
                return await self._retry_lost(self._open_on(route, retry))
            if not is_backpressure(error) or (other := self._reroute_full(route, requested_thinking)) is None:
                raise
            return await self._open_on(other, self._for_route(request, other))

    async def _open_on(self, route: Route, request: GenerationRequest) -> OpenStream:
        size = route.model.size
        started = asyncio.get_running_loop().time()
        slot: Slot | None = None
        iterator: AsyncIterator[GenerationDelta] | None = None

        async def first_delta() -> GenerationDelta:
            nonlocal slot, iterator
            slot = await self._admit(size)
            # Calling the handle sends the request, so only once a slot is held.
            iterator = self.clients[size].stream(request).__aiter__()
            return await iterator.__anext__()

        self.capacity.refuse_if_full(size)  # a 429 before any task is made
        try:
            # The deadline covers the wait for a slot and for the first token.
            first = await self._within_deadline(size, first_delta())
        except BaseException:  # includes the client going away while waiting
            if slot is not None:
                slot.release()
            if iterator is not None:
                await _close_quietly(iterator)
            raise
        assert slot is not None and iterator is not None
        stream = OpenStream(route, started, first, iterator, slot, source=iterator)
        stream.rest = self._held(stream)
        return stream

    @staticmethod
    async def _held(stream: OpenStream) -> AsyncIterator[GenerationDelta]:
        """The rest of a stream; the slot is freed, and the model stopped if the stream was cut
        short (client gone, error), however it ends."""
        try:
            async for delta in stream.source:
                yield delta
            stream.finished = True
        finally:
            stream.slot.release()
            if not stream.finished:
                stream.finished = True
                await _close_quietly(stream.source)

    @staticmethod
    def _for_route(request: GenerationRequest, route: Route) -> GenerationRequest:
        """The same request re-addressed (a new id; the route's thinking mode)."""
        return dataclasses.replace(
            request,
            request_id=request.request_id + "-" + route.model.size,
            enable_thinking=route.thinking if request.prompt is None else None,
        )


async def _close_quietly(iterator) -> None:
    """Stop a model stream (a Serve response generator is cancelled; a generator closed)."""
    cancel = getattr(iterator, "cancel", None)
    if cancel is not None:
        cancel()
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing after an error: the first error is what matters
            await aclose()
