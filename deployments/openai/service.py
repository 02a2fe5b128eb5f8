"""The OpenAI-compatible API as a plain class: parse, authenticate, route, call a model, format.

`OpenAIService.handle` takes a Starlette request and returns a Starlette response; the Serve ingress
deployment only forwards to it, so tests drive it without Serve through `LocalModelClient`s.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cluster.config import AUTO_MODEL, ClusterConfig, ModelConfig
from deployments.engines.base import GenerationRequest, SamplingParams, TokenLogprob
from deployments.metrics import ServingMetrics
from deployments.openai import response_bodies
from deployments.openai.auth import ApiKeyAuth
from deployments.openai.capacity import CapacityTracker
from deployments.openai.choices import ChatChoiceFramer, chat_choice, completion_logprobs
from deployments.openai.dispatch import Dispatcher, ModelClient, Route
from deployments.openai.errors import error_response, to_openai_error
from deployments.openai.fingerprint import system_fingerprints
from deployments.openai.limits import RequestLimits
from deployments.openai.media import ImageFetcher
from deployments.openai.messages import to_chat_messages
from deployments.openai.protocol import ChatCompletionRequest, CompletionRequest, OpenAIError
from deployments.openai.sampling_params import fan_out, sampling_params, vocab_size
from deployments.openai.streaming import HeldStreamingResponse, StreamGroup, chat_events, completion_events
from deployments.openai.structured import (
    SpecValidator,
    ToolPlan,
    router_structure,
    routing_signals,
    structured_output,
    tool_plan,
)

log = logging.getLogger(__name__)


class OpenAIService:
    """Routes and answers OpenAI requests for every served size.

    Args:
        config: the cluster config.
        clients: a `ModelClient` per served size.
        router: the difficulty router (`deployments.router.Router`) that `auto` goes through.
        metrics: where counters go; None records nothing.
        capacity: this replica's view of each size's capacity; None treats every size as ready.
        shadow: the shadow-answer runner (`router.shadow`); None runs none.
    """

    def __init__(
        self,
        config: ClusterConfig,
        clients: Mapping[str, ModelClient],
        router,
        metrics: ServingMetrics | None = None,
        capacity: CapacityTracker | None = None,
        shadow=None,
    ):
        self.config = config
        # `deployments.shadow.ShadowRunner`: re-answers sampled `auto` requests after the response.
        self.shadow = shadow
        self.metrics = metrics
        self.capacity = capacity or CapacityTracker(config)
        self.dispatcher = Dispatcher(config, clients, router, self.capacity, metrics)
        self.retry_after_s = config.serving.ingress.retry_after_s
        self.auth = ApiKeyAuth(config.serving.auth)
        self.limits = RequestLimits(config.serving.limits)
        self.spec_validator = SpecValidator(config.serving.limits)
        self.fetcher = ImageFetcher(config.serving.media, config.object_store)
        self.max_images = max((m.engine.max_images_per_prompt for m in config.enabled_models()), default=0)
        self._vocab_sizes: dict[str, int] = {}
        # Hashed once here: the weights and engine settings each model answers with.
        self.fingerprints = system_fingerprints(config)
        self._routes = {
            ("GET", "/healthz"): self._healthz,
            ("GET", "/v1/models"): self._list_models,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
        }

    # ---- dispatch --------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        """Answer one HTTP request; every failure becomes an OpenAI-style error body."""
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):  # an app mounted under a route prefix
            path = path[len(root) :]
        path = path.rstrip("/") or "/"
        handler = self._routes.get((request.method, path))
        started = time.perf_counter()
        request.state.model_label = "none"
        try:
            if handler is None:
                if path.startswith("/v1/models/") and request.method == "GET":
                    self.auth.check(request.headers.get("authorization"))
                    return self._get_model(path.removeprefix("/v1/models/"))
                known = {p for _, p in self._routes}
                status = 405 if path in known else 404
                raise OpenAIError(
                    status, f"{request.method} {path} is not a route of this API", code="not_found"
                )
            if path.startswith("/v1/"):
                self.auth.check(request.headers.get("authorization"))
            response = await handler(request)
            if self.metrics and path.startswith("/v1/") and request.method == "POST":
                self.metrics.record_request(
                    request.state.model_label, response.status_code, time.perf_counter() - started
                )
            return response
        except Exception as raw:
            error = to_openai_error(raw, self.retry_after_s)
            if error.status_code == 429 and self.shadow is not None:
                self.shadow.note_refusal()  # a user was refused: shadow work stops and pauses
            if self.metrics:
                label = request.state.model_label
                self.metrics.record_error(label, error.code or error.error_type)
                self.metrics.record_request(label, error.status_code, time.perf_counter() - started)
            return error_response(error)

    # ---- simple routes ---------------------------------------------------------------------------
    async def _healthz(self, request: Request) -> Response:
        """200 once every size that keeps replicas has one ready; 503 while any is still starting."""
        snapshot = self.capacity.snapshot()
        capacity = {
            self.config.model_by_name(size).public_name: {
                "ready_replicas": state.ready_replicas,
                "queue_full": state.queue_full,
                "in_flight_here": self.capacity.in_flight[size],
                "waiting_here": len(self.capacity.waiting[size]),
                "peak_in_flight_here": self.capacity.peak_in_flight[size],
            }
            for size, state in snapshot.items()
        }
        starting = [
            self.config.model_by_name(size).public_name
            for size in self.capacity.sizes_expected_up()
            if self.capacity.ready is not None and snapshot[size].ready_replicas < 1
        ]
        known = self.capacity.ready is not None or self.capacity.counter is None
        healthy = known and not starting
        body = {
            "status": "ok" if healthy else "starting",
            "models": self._served_names(),
            "capacity": capacity,
            "replica_counts_known": self.capacity.ready is not None,
            "starting": starting,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    def _served_names(self) -> list[str]:
        return [m.public_name for m in self.config.enabled_models()]

    def _model_card(self, model: ModelConfig) -> dict[str, Any]:
        card = {
            "id": model.public_name,
            "object": "model",
            "created": 0,
            "owned_by": "qwen-cluster",
            "size": model.size,
            "variant": model.variant,
            "max_model_len": model.engine.max_model_len,
            "thinking_default": model.spec.thinking_default,
            "engine": model.engine.kind,
            "random_weights": model.random_weights,
        }
        if model.random_weights:
            card["note"] = "DEMO: random-weight checkpoint of the Qwen3.5 architecture; outputs are noise"
        return card

    async def _list_models(self, request: Request) -> Response:
        cards = [self._model_card(m) for m in self.config.enabled_models()]
        cards.append(
            {
                "id": AUTO_MODEL,
                "object": "model",
                "created": 0,
                "owned_by": "qwen-cluster",
                "note": "routes each request to the smallest size that should answer it well",
                "random_weights": self.config.uses_random_weights,
            }
        )
        return JSONResponse({"object": "list", "data": cards})

    def _get_model(self, name: str) -> Response:
        model = self.config.model_by_name(name)
        if model is None:
            raise OpenAIError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        return JSONResponse(self._model_card(model))

    # ---- generation ------------------------------------------------------------------------------
    def _headers(self, routing: dict[str, Any]) -> dict[str, str]:
        headers = {"x-qwen-routed-model": routing["model"], "x-qwen-route-reason": routing["reason"]}
        decided_by = _route_detail(routing)
        if decided_by:
            # The family and per-size P(correct) estimates that decided, after the short reason.
            headers["x-qwen-route-reason"] += ";" + decided_by
        if routing.get("difficulty") is not None:
            headers["x-qwen-difficulty"] = f"{routing['difficulty']:.4f}"
        if routing.get("escalated_from"):
            headers["x-qwen-escalated-from"] = routing["escalated_from"]
        if self.config.uses_random_weights:
            headers["x-qwen-random-weights"] = "true"
        return headers

    def _vocab_size(self, model: ModelConfig) -> int:
        """The model's vocabulary size, read once per model (resolving its checkpoint path on every
        request cost a tenth of a refused request's time)."""
        vocab = self._vocab_sizes.get(model.public_name)
        if vocab is None:
            vocab = self._vocab_sizes[model.public_name] = vocab_size(model, self.config.cache_dir)
        return vocab

    def _sampling(
        self, body, max_tokens, model: ModelConfig, top_logprobs, structured=None
    ) -> SamplingParams:
        return sampling_params(
            body,
            max_tokens,
            model,
            self.config.serving.default_max_tokens,
            self._vocab_size(model),
            top_logprobs,
            structured,
        )

    def _reads_answer_logprobs(self, route: Route) -> bool:
        """Whether anything reads the answer's per-token log-probabilities: escalation and shadow
        labels do, for routed (`auto`) answers only. Otherwise the engines skip them, as `vllm serve`
        computes none unless the client asks (a log-sum-exp over the vocabulary per token, and vLLM's
        logprob entries per token through its output processor); a client's `logprobs` still gets them."""
        if route.decision is None:
            return False
        return self.shadow is not None or self.dispatcher.router.config.escalation.enabled

    def _refuse_if_named_size_full(self, request: Request, data: dict[str, Any]) -> None:
        """The parsed body's screen: a request that names a size which is full is refused (429) before
        validation, message conversion, image fetching and constraint compiling: in a burst, refusals
        are most of the requests. The dispatcher makes the same check before any task, so this only
        moves the refusal earlier; `auto` requests are routed first (a full size may send them on).
        """
        model = self.dispatcher.named_model(data.get("model"))
        if model is not None:
            request.state.model_label = model.public_name  # the 429 is counted against its model
            self.capacity.refuse_if_full(model.size)

    async def _chat(self, request: Request) -> Response:
        body: ChatCompletionRequest = await self.limits.parse(
            request, ChatCompletionRequest, screen=lambda data: self._refuse_if_named_size_full(request, data)
        )
        plan = tool_plan(body)
        # Bad schemas, regexes, grammars and tool parameters are 400s here, before any model work.
        structured = structured_output(body, plan, self.spec_validator)
        messages = await to_chat_messages(body.messages, self.fetcher, self.max_images)
        requested_thinking = body.chat_template_kwargs.enable_thinking if body.chat_template_kwargs else None
        if structured is not None:
            # Constrained output is the whole completion: engines decode it with thinking off.
            requested_thinking = False
        signals = routing_signals(body, plan)
        route = self.dispatcher.choose(
            body.model, messages=messages, thinking=requested_thinking, structure=router_structure(signals)
        )
        if signals:  # what the policy weighed (routing.structure_weights), for the client to see
            route.routing["signals"] = signals
        request.state.model_label = route.model.public_name
        top_logprobs = (body.top_logprobs or 0) if body.logprobs else None
        generation = GenerationRequest(
            request_id="chatcmpl-" + uuid.uuid4().hex,
            sampling=self._sampling(body, body.token_limit, route.model, top_logprobs, structured),
            messages=messages,
            enable_thinking=route.thinking,
            tools=plan.tools or None,
            answer_logprobs=self._reads_answer_logprobs(route),
        )
        samples = fan_out(generation, body.n)

        def framer(thinking: bool) -> ChatChoiceFramer:
            return ChatChoiceFramer(thinking, plan, top_logprobs)

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            streams = await self._open_streams(route, samples, requested_thinking)
            events = chat_events(
                generation.request_id,
                self.fingerprints[streams[0].route.model.public_name],
                streams,
                [framer(stream.route.thinking_on) for stream in streams],
                include_usage,
                self.metrics,
                self.retry_after_s,
                self._stream_tap(streams, samples, "chat"),
            )
            headers = self._headers(streams[0].route.routing)
            request.state.model_label = streams[0].route.model.public_name
            return HeldStreamingResponse(
                StreamGroup(streams), events, media_type="text/event-stream", headers=headers
            )
        outcomes = await self._generate_all(route, samples, requested_thinking)
        route = outcomes[0][1]
        choices = [
            chat_choice(
                i,
                result.text,
                result.finish_reason,
                framer(sample_route.thinking_on),
                _token_logprobs(result),
            )
            for i, (result, sample_route) in enumerate(outcomes)
        ]
        prompt, completion = _usage(outcomes)
        self._record_usage(route.model, prompt, completion)
        payload = response_bodies.chat_completion(
            generation.request_id,
            route.model.public_name,
            choices,
            prompt,
            completion,
            route.routing,
            self.fingerprints[route.model.public_name],
        )
        request.state.model_label = route.model.public_name
        shadow = self.shadow and self.shadow.after_response(route, samples[0], outcomes[0][0], "chat")
        return JSONResponse(payload, headers=self._headers(route.routing), background=shadow)

    async def _completions(self, request: Request) -> Response:
        body: CompletionRequest = await self.limits.parse(
            request, CompletionRequest, screen=lambda data: self._refuse_if_named_size_full(request, data)
        )
        no_tools = ToolPlan()
        structured = structured_output(body, no_tools, self.spec_validator)
        signals = routing_signals(body, no_tools)
        route = self.dispatcher.choose(
            body.model, prompt=body.prompt, thinking=False, structure=router_structure(signals)
        )
        if signals:
            route.routing["signals"] = signals
        request.state.model_label = route.model.public_name
        top_logprobs = body.logprobs  # the legacy form: an int, None for no logprobs
        generation = GenerationRequest(
            request_id="cmpl-" + uuid.uuid4().hex,
            sampling=self._sampling(body, body.max_tokens, route.model, top_logprobs, structured),
            prompt=body.prompt,
            answer_logprobs=self._reads_answer_logprobs(route),
        )
        samples = fan_out(generation, body.n)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            streams = await self._open_streams(route, samples, None)
            events = completion_events(
                generation.request_id,
                self.fingerprints[streams[0].route.model.public_name],
                streams,
                top_logprobs,
                include_usage,
                self.metrics,
                self.retry_after_s,
                self._stream_tap(streams, samples, "completion"),
            )
            headers = self._headers(streams[0].route.routing)
            request.state.model_label = streams[0].route.model.public_name
            return HeldStreamingResponse(
                StreamGroup(streams), events, media_type="text/event-stream", headers=headers
            )
        outcomes = await self._generate_all(route, samples, None)
        route = outcomes[0][1]
        choices = [
            response_bodies.completion_choice(
                i,
                result.text,
                result.finish_reason,
                None if top_logprobs is None else completion_logprobs(_token_logprobs(result), top_logprobs),
            )
            for i, (result, _) in enumerate(outcomes)
        ]
        prompt, completion = _usage(outcomes)
        self._record_usage(route.model, prompt, completion)
        payload = response_bodies.completion(
            generation.request_id,
            route.model.public_name,
            choices,
            prompt,
            completion,
            route.routing,
            self.fingerprints[route.model.public_name],
        )
        request.state.model_label = route.model.public_name
        shadow = self.shadow and self.shadow.after_response(route, samples[0], outcomes[0][0], "completion")
        return JSONResponse(payload, headers=self._headers(route.routing), background=shadow)

    async def _generate_all(self, route, samples: list[GenerationRequest], requested_thinking):
        """Every sample's (result, route), concurrently; one failure cancels the others."""
        if len(samples) == 1:
            return [await self.dispatcher.generate(route, samples[0], requested_thinking)]
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self.dispatcher.generate(route, sample, requested_thinking))
                for sample in samples
            ]
        return [task.result() for task in tasks]

    async def _open_streams(self, route, samples: list[GenerationRequest], requested_thinking):
        """Every sample's open stream; if one cannot open, the others are closed and it raises."""
        if len(samples) == 1:
            return [await self.dispatcher.open_stream(route, samples[0], requested_thinking)]
        opened = await asyncio.gather(
            *(self.dispatcher.open_stream(route, sample, requested_thinking) for sample in samples),
            return_exceptions=True,
        )
        failures = [item for item in opened if isinstance(item, BaseException)]
        if failures:
            for item in opened:
                if not isinstance(item, BaseException):
                    await item.close()
            raise failures[0]
        return list(opened)

    def _stream_tap(self, streams, samples: list[GenerationRequest], endpoint: str):
        """The shadow collector of a sampled streamed `auto` request, or None (most requests).

        Drawn once the streams are open, before any event: the route is then the one the client is
        told (after any capacity fallback), and an unsampled stream does no shadow work at all.
        """
        if self.shadow is None:
            return None
        return self.shadow.stream_tap(streams[0].route, samples[0], endpoint)

    def _record_usage(self, model: ModelConfig, prompt: int, completion: int) -> None:
        if self.metrics:
            self.metrics.record_tokens(model.public_name, prompt, completion)

    async def close(self) -> None:
        """Release network clients and background tasks."""
        await self.fetcher.close()
        await self.capacity.close()
        if self.shadow is not None:
            await self.shadow.close()


def _token_logprobs(result) -> list[TokenLogprob]:
    """A result's per-token logprobs (engines that only report the final lists fall back to those)."""
    if result.token_logprobs:
        return result.token_logprobs
    return [
        TokenLogprob(token, logprob, -1)
        for token, logprob in zip(result.tokens, result.logprobs, strict=False)
    ]


def _usage(outcomes) -> tuple[int, int]:
    """(prompt, completion) tokens of `n` samples: the prompt counted once, completions summed."""
    first = outcomes[0][0]
    return first.prompt_tokens, sum(result.completion_tokens for result, _ in outcomes)


def _route_detail(routing: dict[str, Any]) -> str:
    """`family=...;p=0.8b:0.93/2b:...` from a routing record (ASCII, header-safe); "" when absent."""
    parts = []
    if routing.get("family"):
        parts.append(f"family={routing['family']}")
    if routing.get("estimates"):
        parts.append("p=" + "/".join(f"{s}:{p:.2f}" for s, p in routing["estimates"].items()))
    return ";".join(parts)
