"""The model server: one engine behind a plain class, and the Serve deployment that wraps it.

`ModelServer` holds no Serve state, so tests construct it directly; `ModelDeployment` adds the Serve
lifecycle (async constructor, health checks, shutdown) around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from cluster.config import ModelConfig
from deployments.engines.base import (
    ChatMessage,
    Engine,
    GenerationDelta,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from deployments.engines.factory import create_engine

log = logging.getLogger(__name__)

# After a stream's first delta, at most one delta per this long leaves the replica (0: as they come).
# Off: 0.02 cut a streamed 128-token request's CPU by 17% (2 rounds, 2026-12-06 03:04 UTC), but a
# later run on an overloaded machine (03:27 UTC) gave short streamed requests a worse TTFT p99 in both
# rounds; until an alternating TTFT measurement on a quiet machine says otherwise, deltas go as they
# come (the engine still merges those that queued while the consumer was busy). docs/performance.md
STREAM_INTERVAL_S = 0.0


@dataclass
class GenerationResult:
    """A whole (non-streamed) answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    # Per-token logprobs with top alternatives, when the request asked for `sampling.logprobs`.
    token_logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def mean_logprob(self) -> float | None:
        """Mean log-probability of the completion tokens (a confidence signal), or None if empty."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


class ModelServer:
    """Serves one model size with one engine.

    Args:
        model: the size's config.
        cache_dir: where demo checkpoints live.
        engine: an engine to use instead of the one the config names (already constructed).
    """

    def __init__(self, model: ModelConfig, cache_dir: Path, engine: Engine | None = None):
        self.model = model
        self.engine = engine or create_engine(model, cache_dir)
        # Only the transformers engine merges what queued while the stream paused (vLLM's own
        # output collector does too, but that is not measured here).
        self.stream_interval_s = STREAM_INTERVAL_S if model.engine.kind == "transformers" else 0.0

    async def start(self) -> None:
        """Load the model."""
        await self.engine.start()
        info = self.engine.info()
        log.info(
            "%s ready on %s from %s%s",
            self.model.public_name,
            info.device,
            info.model_path,
            " (RANDOM WEIGHTS: demo checkpoint, answers are noise)" if info.random_weights else "",
        )

    async def warm_up(self) -> float:
        """Generate two tokens once, so the first real requests do not pay for the engine's
        first-run work (allocator growth, kernel selection, lazy imports) while others wait behind
        them; returns the seconds it took. vLLM and TGI warm up at start for the same reason."""
        started = time.perf_counter()
        request = GenerationRequest(
            request_id="warm-up",
            sampling=SamplingParams(max_tokens=2, temperature=0.0),
            messages=[ChatMessage(role="user", content="Hello")],
        )
        async for _ in self.engine.chat(request):
            pass
        elapsed = time.perf_counter() - started
        log.info("%s warmed up in %.2fs", self.model.public_name, elapsed)
        return elapsed

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate a whole answer."""
        pieces: list[str] = []
        token_logprobs: list[TokenLogprob] = []
        last: GenerationDelta | None = None
        async for delta in self.engine.chat(dataclasses.replace(request, stream=False)):
            pieces.append(delta.text)
            token_logprobs.extend(delta.token_logprobs or [])
            last = delta
        assert last is not None and last.finish_reason is not None, "engine ended without a final delta"
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            finish_reason=last.finish_reason,
            logprobs=last.logprobs or [],
            tokens=last.tokens or [],
            token_logprobs=token_logprobs,
        )

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Generate, yielding deltas as they come (see `Engine.chat`): the first at once, the next
        ones at most every `stream_interval_s`, each holding what the engine produced meanwhile."""
        async with contextlib.aclosing(self.engine.chat(request)) as deltas:
            async for delta in deltas:
                yield delta
                if self.stream_interval_s and delta.finish_reason is None:
                    # Each delta is a Ray message to the ingress and an SSE event there: a streamed
                    # token cost 0.17 CPU-ms more than a non-streamed one (docs/performance.md).
                    await asyncio.sleep(self.stream_interval_s)

    async def check_health(self) -> None:
        """Raise if the engine cannot serve."""
        await self.engine.check_health()

    async def shutdown(self) -> None:
        """Stop the engine."""
        await self.engine.shutdown()


def ensure_demo_checkpoint(model: ModelConfig, cache_dir: Path) -> None:
    """Generate the size's random-weight demo checkpoint under `cache_dir` if the size serves one and
    this node lacks it (a replica may start on a node that never ran the demo)."""
    if model.random_weights:
        from deployments.engines.demo_models import ensure_demo_models

        ensure_demo_models(cache_dir, [model.size])


def make_model_deployment():
    """The Serve deployment class for one model size (options are applied by the app builder)."""
    from ray import serve

    from deployments.heap import freeze_startup_heap

    @serve.deployment
    class ModelDeployment(ModelServer):
        async def __init__(self, model: ModelConfig, cache_dir: str):
            logging.basicConfig(level=logging.INFO)
            ensure_demo_checkpoint(model, Path(cache_dir))
            ModelServer.__init__(self, model, Path(cache_dir))
            await self.start()
            await self.warm_up()
            freeze_startup_heap()

        async def check_health(self) -> None:  # called by Serve every health_check_period_s
            await ModelServer.check_health(self)

        async def __del__(self) -> None:  # Serve calls this when the replica stops
            await self.shutdown()

    return ModelDeployment
