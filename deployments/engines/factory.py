"""Build the engine a model config asks for."""

from __future__ import annotations

from pathlib import Path

from cluster.config import ModelConfig
from deployments.engines.base import Engine


def create_engine(model: ModelConfig, cache_dir: Path) -> Engine:
    """The engine for `model`, constructed but not started (call `await engine.start()`).

    Demo checkpoints must exist already (`deployments.engines.demo_models.ensure_demo_models`).
    """
    path = model.resolved_checkpoint(cache_dir)
    if model.engine.kind == "vllm":
        from deployments.engines.vllm_engine import VLLMEngine

        return VLLMEngine(path, model)
    from deployments.engines.transformers_engine import TransformersEngine

    return TransformersEngine(
        path,
        model.engine,
        thinking_default=model.spec.thinking_default,
        sampling_defaults=model.spec.sampling,
        random_weights=model.random_weights,
    )
