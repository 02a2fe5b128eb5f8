"""The OpenAI ingress as a Serve deployment: a thin shell around `OpenAIService`.

It takes raw Starlette requests in `__call__` rather than going through FastAPI: the ingress is on
every request's path, and routing four paths by hand costs less than FastAPI's dependency and
validation layers (our own pydantic models validate bodies and shape the errors as OpenAI does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from cluster.config import ClusterConfig
from deployments.engines.base import GenerationDelta, GenerationRequest
from deployments.model_server import GenerationResult

log = logging.getLogger(__name__)


class HandleModelClient:
    """Reaches one model size through its Serve deployment handle."""

    def __init__(self, handle):
        self.handle = handle
        self._stream_handle = handle.options(stream=True)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        response = self.handle.generate.remote(request)
        try:
            return await response
        except asyncio.CancelledError:  # the client went away: stop the engine row too
            response.cancel()
            raise

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        return self._stream_handle.generate_stream.remote(request)


def make_ingress_deployment():
    """The Serve deployment class of the ingress (options are applied by the app builder)."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment
    class OpenAIIngress:
        def __init__(self, config: ClusterConfig, **model_handles: Any):
            from deployments.heap import freeze_startup_heap
            from deployments.metrics import ServingMetrics
            from deployments.openai.capacity import CapacityTracker, serve_replica_counter
            from deployments.openai.service import OpenAIService
            from deployments.router import build_router
            from deployments.shadow.setup import LearningLoop

            logging.basicConfig(level=logging.INFO)
            clients = {size: HandleModelClient(handle) for size, handle in model_handles.items()}
            router = build_router(config.router, served_sizes=[m.size for m in config.enabled_models()])
            router.warm_up()
            counter = serve_replica_counter(
                config.serving.app_name, {m.size: m.deployment_name for m in config.enabled_models()}
            )
            self.capacity = CapacityTracker(config, counter)
            metrics = ServingMetrics()
            self.learning = LearningLoop(config, clients, self.capacity, router, metrics)
            self.service = OpenAIService(
                config, clients, router, metrics=metrics, capacity=self.capacity, shadow=self.learning.shadow
            )
            if config.uses_random_weights:
                log.warning("serving RANDOM-WEIGHT demo checkpoints: answers are noise")
            freeze_startup_heap()

        async def __call__(self, request: Request):
            self.capacity.start()  # idempotent; needs the replica's running event loop
            self.learning.start()
            return await self.service.handle(request)

        def reconfigure(self, user_config: dict[str, Any]) -> None:
            # Serve calls this with the deployment's `user_config` at start and whenever it changes
            # (serve deploy / RayService update), without restarting the replica.
            self.learning.reconfigure(user_config)

        async def __del__(self):
            await self.learning.close()
            await self.service.close()

    return OpenAIIngress
