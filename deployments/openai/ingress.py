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


class IngressCore:
    """What an ingress replica holds, whichever way it reaches the sizes: the router, admission, the
    learning loop and the OpenAI service over `clients`.

    Args:
        config: the cluster config.
        clients: one client per enabled size.
        deployment_names: the Serve deployment whose running replicas serve each size (None when
            this replica is the only one that serves them: colocated, nothing to poll).
    """

    def __init__(
        self, config: ClusterConfig, clients: dict[str, Any], deployment_names: dict[str, str] | None
    ):
        from deployments.metrics import ServingMetrics
        from deployments.openai.capacity import CapacityTracker, serve_replica_counter
        from deployments.openai.service import OpenAIService
        from deployments.router import build_router
        from deployments.shadow.setup import LearningLoop

        router = build_router(config.router, served_sizes=[m.size for m in config.enabled_models()])
        router.warm_up()
        counter = (
            serve_replica_counter(config.serving.app_name, deployment_names) if deployment_names else None
        )
        self.capacity = CapacityTracker(config, counter)
        metrics = ServingMetrics()
        self.learning = LearningLoop(config, clients, self.capacity, router, metrics)
        self.service = OpenAIService(
            config, clients, router, metrics=metrics, capacity=self.capacity, shadow=self.learning.shadow
        )
        if config.uses_random_weights:
            log.warning("serving RANDOM-WEIGHT demo checkpoints: answers are noise")

    async def handle(self, request):
        """Answer one HTTP request."""
        self.capacity.start()  # idempotent; needs the replica's running event loop
        self.learning.start()
        return await self.service.handle(request)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply the deployment's `user_config` (the run-time shadow fields)."""
        self.learning.reconfigure(user_config)

    async def close(self) -> None:
        """Stop the background work."""
        await self.learning.close()
        await self.service.close()


def make_ingress_deployment():
    """The Serve deployment class of the ingress (options are applied by the app builder)."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment
    class OpenAIIngress:
        def __init__(self, config: ClusterConfig, **model_handles: Any):
            from deployments.heap import freeze_startup_heap

            logging.basicConfig(level=logging.INFO)
            clients = {size: HandleModelClient(handle) for size, handle in model_handles.items()}
            names = {m.size: m.deployment_name for m in config.enabled_models()}
            self.core = IngressCore(config, clients, names)
            freeze_startup_heap()

        async def __call__(self, request: Request):
            return await self.core.handle(request)

        def reconfigure(self, user_config: dict[str, Any]) -> None:
            # Serve calls this with the deployment's `user_config` at start and whenever it changes
            # (serve deploy / RayService update), without restarting the replica.
            self.core.reconfigure(user_config)

        async def __del__(self):
            await self.core.close()

    return OpenAIIngress


def make_colocated_deployment():
    """The Serve deployment class that serves one size alone: the ingress and that size's engine in
    one replica, so a request takes one Serve hop (proxy to replica) instead of two. Each replica
    admits for its own engine; Serve's proxy spreads requests over the replicas."""
    from pathlib import Path

    from ray import serve
    from starlette.requests import Request

    from deployments.openai.dispatch import LocalModelClient

    @serve.deployment
    class OpenAIServer:
        async def __init__(self, config: ClusterConfig):
            from deployments.heap import freeze_startup_heap
            from deployments.model_server import ModelServer, ensure_demo_checkpoint

            logging.basicConfig(level=logging.INFO)
            model = config.colocated_model()
            assert model is not None, "the app builder colocates only a single enabled size"
            ensure_demo_checkpoint(model, Path(config.cache_dir))
            self.server = ModelServer(model, Path(config.cache_dir))
            await self.server.start()
            await self.server.warm_up()
            self.core = IngressCore(config, {model.size: LocalModelClient(self.server)}, None)
            freeze_startup_heap()

        async def __call__(self, request: Request):
            return await self.core.handle(request)

        def reconfigure(self, user_config: dict[str, Any]) -> None:
            self.core.reconfigure(user_config)

        async def check_health(self) -> None:  # called by Serve every health_check_period_s
            await self.server.check_health()

        async def __del__(self):
            await self.core.close()
            await self.server.shutdown()

    return OpenAIServer
