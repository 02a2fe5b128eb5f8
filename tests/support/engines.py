"""Run test coroutines against a real `TransformersEngine` on the 0.8b demo checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster.catalog import CATALOG
from cluster.config import EngineConfig
from deployments.engines.transformers_engine import TransformersEngine


async def collect(engine, req):
    """All of one request's text and its last delta."""
    deltas = [d async for d in engine.chat(req)]
    return "".join(d.text for d in deltas), deltas[-1]


def engine_runner(demo_cache: Path, max_model_len: int) -> Callable[..., Any]:
    """`run(body, **engine_config)`: start an engine, await `body(engine)`, shut it down, return the result.

    `max_model_len` is the default context limit; a call may override it like any other config field.
    """

    def run(body: Callable[[TransformersEngine], Awaitable[Any]], **config):
        config.setdefault("max_model_len", max_model_len)
        engine = TransformersEngine(
            str(demo_cache / "demo-models" / "qwen3.5-0.8b"),
            EngineConfig(**{"device": "cpu", "dtype": "float32", "torch_threads": 1, **config}),
            thinking_default=False,
            sampling_defaults=CATALOG["0.8b"].sampling,
            random_weights=True,
        )

        async def main():
            await engine.start()
            try:
                return await body(engine)
            finally:
                await engine.shutdown()

        return asyncio.run(main())

    return run


def demo_model_entries(sizes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Config `models` entries serving `sizes` from the random-weight demo checkpoints: CPU, float32,
    a 2,048-token context and one torch thread each, as the service-level unit tests run them."""
    engine = {"device": "cpu", "dtype": "float32", "max_model_len": 2048, "torch_threads": 1}
    return [{"size": size, "random_weights": True, "engine": dict(engine)} for size in sizes]
