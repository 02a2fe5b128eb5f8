"""The OpenAI-compatible API as a plain class: parse, authenticate, route, call a model, format.

`OpenAIService.handle` takes a Starlette request and returns a Starlette response; the Serve ingress
deployment only forwards to it, so tests drive it without Serve through `LocalModelClient`s.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cluster.config import AUTO_MODEL, ClusterConfig, ModelConfig
from deployments import responses
from deployments.auth import ApiKeyAuth
from deployments.engines.base import (
    ChatMessage,
    EngineOverloadedError,
    EngineRequestError,
    GenerationDelta,
    GenerationRequest,
    SamplingParams,
)
from deployments.media import ImageFetcher
from deployments.messages import to_chat_messages
from deployments.metrics import ServingMetrics
from deployments.model_server import GenerationResult, ModelServer
from deployments.protocol import ChatCompletionRequest, CompletionRequest, OpenAIError, parse_body
from deployments.reasoning import ReasoningSplitter

log = logging.getLogger(__name__)


class ModelClient(Protocol):
    """How the service reaches one model size (a Serve handle, or a server in process)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...


class LocalModelClient:
    """A `ModelServer` in this process (tests, single-process tools)."""

    def __init__(self, server: ModelServer):
        self.server = server

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.server.generate(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        return self.server.generate_stream(request)


def unwrap_error(error: BaseException) -> BaseException:
    """The user exception inside Ray's task-error wrappers."""
    seen = 0
    while getattr(error, "cause", None) is not None and isinstance(error.cause, BaseException) and seen < 5:
        error = error.cause
        seen += 1
    return error


def to_openai_error(error: BaseException, retry_after_s: int) -> OpenAIError:
    """Map engine, Serve and timeout errors to HTTP errors; anything unknown is a 500."""
    from ray.serve.exceptions import BackPressureError

    error = unwrap_error(error)
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, EngineRequestError):
        return OpenAIError(error.status_code, error.message, param=error.param, code=error.code)
    if isinstance(error, (BackPressureError, EngineOverloadedError)):
        return OpenAIError(
            429,
            "the model is at capacity; retry shortly",
            code="overloaded",
            headers={"Retry-After": str(retry_after_s)},
        )
    if isinstance(error, asyncio.TimeoutError):
        return OpenAIError(504, "the request took longer than the server's time limit", code="timeout")
    log.error("request failed", exc_info=error)
    return OpenAIError(500, f"internal error: {type(error).__name__}", code="internal_error")


def error_response(error: OpenAIError) -> JSONResponse:
    """An OpenAI-style error response."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


class OpenAIService:
    """Routes and answers OpenAI requests for every served size.

    Args:
        config: the cluster config.
        clients: a `ModelClient` per served size.
        router: the difficulty router (`deployments.router.Router`) that `auto` goes through.
        metrics: where counters go; None records nothing.
    """

    def __init__(
        self,
        config: ClusterConfig,
        clients: Mapping[str, ModelClient],
        router,
        metrics: ServingMetrics | None = None,
    ):
        self.config = config
        self.clients = dict(clients)
        self.router = router
        self.metrics = metrics
        self.auth = ApiKeyAuth(config.serving.auth)
        self.fetcher = ImageFetcher(config.serving.media, config.object_store)
        self.max_images = max((m.engine.max_images_per_prompt for m in config.enabled_models()), default=0)
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
        model_label = "none"
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
            response, model_label = await handler(request)
            if self.metrics and path.startswith("/v1/") and request.method == "POST":
                self.metrics.record_request(model_label, response.status_code, time.perf_counter() - started)
            return response
        except Exception as raw:
            error = to_openai_error(raw, self.config.serving.ingress.retry_after_s)
            if self.metrics:
                self.metrics.record_error(model_label, error.code or error.error_type)
                self.metrics.record_request(model_label, error.status_code, time.perf_counter() - started)
            return error_response(error)

    # ---- simple routes ---------------------------------------------------------------------------
    async def _healthz(self, request: Request) -> tuple[Response, str]:
        return JSONResponse({"status": "ok", "models": list(self._served_names())}), "none"

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

    async def _list_models(self, request: Request) -> tuple[Response, str]:
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
        return JSONResponse({"object": "list", "data": cards}), "none"

    def _get_model(self, name: str) -> Response:
        model = self.config.model_by_name(name)
        if model is None:
            raise OpenAIError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        return JSONResponse(self._model_card(model))

    # ---- generation ------------------------------------------------------------------------------
    def _pick_model(
        self,
        requested: str | None,
        messages: list[ChatMessage] | None,
        prompt: str | None,
        thinking: bool | None,
    ):
        """The size to serve a request with and the routing record that explains why."""
        name = requested or self.config.serving.default_model
        if name == AUTO_MODEL:
            decision = self.router.route(messages=messages, prompt=prompt, requested_thinking=thinking)
            model = self.config.model_by_name(decision.size)
            routing = {
                "model": model.public_name,
                "difficulty": round(decision.difficulty, 4),
                "reason": decision.reason,
                "scorer": decision.scorer,
                "thinking": decision.thinking,
            }
            return model, decision.thinking if thinking is None else thinking, routing
        model = self.config.model_by_name(name)
        if model is None:
            raise OpenAIError(
                404,
                f"the model {name!r} does not exist; served: {', '.join([*self._served_names(), AUTO_MODEL])}",
                param="model",
                code="model_not_found",
            )
        return (
            model,
            thinking,
            {"model": model.public_name, "difficulty": None, "reason": "explicit", "scorer": None},
        )

    def _headers(self, routing: dict[str, Any]) -> dict[str, str]:
        headers = {"x-qwen-routed-model": routing["model"], "x-qwen-route-reason": routing["reason"]}
        if routing.get("difficulty") is not None:
            headers["x-qwen-difficulty"] = f"{routing['difficulty']:.4f}"
        if self.config.uses_random_weights:
            headers["x-qwen-random-weights"] = "true"
        return headers

    def _sampling(self, body, max_tokens: int | None, model: ModelConfig) -> SamplingParams:
        limit = max_tokens or min(self.config.serving.default_max_tokens, model.engine.max_model_len)
        return SamplingParams(
            max_tokens=limit,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            min_p=body.min_p,
            presence_penalty=body.presence_penalty,
            stop=body.stop,
            seed=body.seed,
            logprobs=bool(getattr(body, "logprobs", False)),
        )

    async def _chat(self, request: Request) -> tuple[Response, str]:
        body: ChatCompletionRequest = parse_body(await request.body(), ChatCompletionRequest)
        messages = await to_chat_messages(body.messages, self.fetcher, self.max_images)
        requested_thinking = body.chat_template_kwargs.enable_thinking if body.chat_template_kwargs else None
        model, thinking, routing = self._pick_model(body.model, messages, None, requested_thinking)
        if self.metrics and routing["reason"] != "explicit":
            self.metrics.record_route(model.public_name, routing["reason"])
        generation = GenerationRequest(
            request_id="chatcmpl-" + uuid.uuid4().hex,
            sampling=self._sampling(body, body.token_limit, model),
            messages=messages,
            enable_thinking=thinking,
        )
        thinking_on = model.spec.thinking_default if thinking is None else thinking
        client = self.clients[model.size]
        timeout = self.config.serving.ingress.request_timeout_s
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = await self._first_then_rest(client.stream(generation), timeout)
            events = self._chat_events(
                generation.request_id, model, stream, thinking_on, include_usage, routing
            )
            return StreamingResponse(
                events, media_type="text/event-stream", headers=self._headers(routing)
            ), model.public_name
        result = await asyncio.wait_for(client.generate(generation), timeout)
        self._record_usage(model, result.prompt_tokens, result.completion_tokens)
        splitter = ReasoningSplitter(thinking_on)
        reasoning, content = splitter.feed(result.text)
        tail_reasoning, tail_content = splitter.flush()
        payload = responses.chat_completion(
            generation.request_id,
            model.public_name,
            result,
            reasoning + tail_reasoning,
            content + tail_content,
            body.logprobs,
            routing,
        )
        return JSONResponse(payload, headers=self._headers(routing)), model.public_name

    async def _completions(self, request: Request) -> tuple[Response, str]:
        body: CompletionRequest = parse_body(await request.body(), CompletionRequest)
        model, _, routing = self._pick_model(body.model, None, body.prompt, False)
        generation = GenerationRequest(
            request_id="cmpl-" + uuid.uuid4().hex,
            sampling=self._sampling(body, body.max_tokens, model),
            prompt=body.prompt,
        )
        client = self.clients[model.size]
        timeout = self.config.serving.ingress.request_timeout_s
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = await self._first_then_rest(client.stream(generation), timeout)
            events = self._completion_events(generation.request_id, model, stream, include_usage)
            return StreamingResponse(
                events, media_type="text/event-stream", headers=self._headers(routing)
            ), model.public_name
        result = await asyncio.wait_for(client.generate(generation), timeout)
        self._record_usage(model, result.prompt_tokens, result.completion_tokens)
        payload = responses.completion(generation.request_id, model.public_name, result, routing)
        return JSONResponse(payload, headers=self._headers(routing)), model.public_name

    def _record_usage(self, model: ModelConfig, prompt: int, completion: int) -> None:
        if self.metrics:
            self.metrics.record_tokens(model.public_name, prompt, completion)

    async def _first_then_rest(self, stream: AsyncIterator[GenerationDelta], timeout: float):
        """Wait for the first delta before answering 200, so request errors still get a 4xx."""
        started = time.perf_counter()
        iterator = stream.__aiter__()
        first = await asyncio.wait_for(iterator.__anext__(), timeout)
        return started, first, iterator

    async def _deltas(self, model: ModelConfig, stream) -> AsyncIterator[GenerationDelta]:
        started, first, iterator = stream
        if self.metrics:
            self.metrics.record_first_token(model.public_name, time.perf_counter() - started)
        yield first
        async for delta in iterator:
            yield delta

    async def _chat_events(
        self,
        request_id,
        model: ModelConfig,
        stream,
        thinking: bool,
        include_usage: bool,
        routing: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        name = model.public_name
        splitter = ReasoningSplitter(thinking)
        yield responses.sse(
            responses.chat_chunk(
                request_id, name, created, {"role": "assistant", "content": ""}, routing=routing
            )
        )
        last = None
        try:
            async for delta in self._deltas(model, stream):
                last = delta
                reasoning, content = splitter.feed(delta.text)
                if delta.finish_reason is not None:
                    tail_reasoning, tail_content = splitter.flush()
                    reasoning, content = reasoning + tail_reasoning, content + tail_content
                if reasoning:
                    yield responses.sse(
                        responses.chat_chunk(request_id, name, created, {"reasoning_content": reasoning})
                    )
                if content:
                    yield responses.sse(responses.chat_chunk(request_id, name, created, {"content": content}))
                if delta.finish_reason is not None:
                    yield responses.sse(
                        responses.chat_chunk(request_id, name, created, {}, delta.finish_reason)
                    )
        except Exception as raw:  # the status line is sent already: report in-band, as vLLM does
            yield responses.sse(to_openai_error(raw, self.config.serving.ingress.retry_after_s).body())
        if last is not None:
            self._record_usage(model, last.prompt_tokens, last.completion_tokens)
            if include_usage:
                yield responses.sse(
                    responses.usage_chunk(
                        request_id,
                        name,
                        created,
                        "chat.completion.chunk",
                        last.prompt_tokens,
                        last.completion_tokens,
                    )
                )
        yield responses.sse("[DONE]")

    async def _completion_events(
        self, request_id, model: ModelConfig, stream, include_usage: bool
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        name = model.public_name
        last = None
        try:
            async for delta in self._deltas(model, stream):
                last = delta
                if delta.text or delta.finish_reason is not None:
                    yield responses.sse(
                        responses.completion_chunk(request_id, name, created, delta.text, delta.finish_reason)
                    )
        except Exception as raw:
            yield responses.sse(to_openai_error(raw, self.config.serving.ingress.retry_after_s).body())
        if last is not None:
            self._record_usage(model, last.prompt_tokens, last.completion_tokens)
            if include_usage:
                yield responses.sse(
                    responses.usage_chunk(
                        request_id,
                        name,
                        created,
                        "text_completion",
                        last.prompt_tokens,
                        last.completion_tokens,
                    )
                )
        yield responses.sse("[DONE]")

    async def close(self) -> None:
        """Release network clients."""
        await self.fetcher.close()
