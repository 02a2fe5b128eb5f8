"""OpenAI sampling fields -> engine `SamplingParams`, and `n` samples -> `n` engine requests."""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

from cluster.config import ModelConfig
from deployments.engines.base import GenerationRequest, SamplingParams, StructuredOutput
from deployments.openai.protocol import OpenAIError

# Qwen3.5's embedding width (`vocab_size` in every size's config.json, and transformers' default
# for `Qwen3_5TextConfig`); ids past the tokenizer's own vocabulary are padding the model never emits.
QWEN35_VOCAB_SIZE = 248_320


@lru_cache(maxsize=32)
def _checkpoint_vocab(config_path: str) -> int | None:
    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError):
        return None
    text = config.get("text_config", config)
    return text.get("vocab_size") if isinstance(text, dict) else None


def vocab_size(model: ModelConfig, cache_dir: Path) -> int:
    """The model's vocabulary size without loading a tokenizer: read from a local checkpoint's
    config.json (the demo checkpoints), else the Qwen3.5 family's."""
    path = Path(model.resolved_checkpoint(cache_dir)) / "config.json"
    return _checkpoint_vocab(str(path)) or QWEN35_VOCAB_SIZE


def logit_bias(raw: dict[str, float] | None, vocab: int) -> dict[int, float]:
    """Token id -> bias, every id checked against the vocabulary.

    Raises:
        OpenAIError: 400 naming `logit_bias` for an id outside [0, vocab).
    """
    bias = {int(key): value for key, value in (raw or {}).items()}
    outside = sorted(token for token in bias if token >= vocab)
    if outside:
        raise OpenAIError(
            400,
            f"logit_bias names token ids outside the vocabulary (size {vocab}): {outside[:5]}",
            param="logit_bias",
            code="invalid_parameter",
        )
    return bias


def sampling_params(
    body,
    max_tokens: int | None,
    model: ModelConfig,
    default_max_tokens: int,
    vocab: int,
    top_logprobs: int | None,
    structured: StructuredOutput | None = None,
) -> SamplingParams:
    """The engine's sampling for a chat or completion request (`top_logprobs` None: no logprobs)."""
    return SamplingParams(
        max_tokens=max_tokens or min(default_max_tokens, model.engine.max_model_len),
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        min_p=body.min_p,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        stop=body.stop,
        seed=body.seed,
        logprobs=top_logprobs is not None,
        top_logprobs=top_logprobs or 0,
        logit_bias=logit_bias(body.logit_bias, vocab),
        structured=structured,
    )


def fan_out(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """`n` independent samples of one request: their own ids and, when a seed is given, seeds
    `seed, seed+1, ...` so the samples differ yet the whole answer is reproducible."""
    if n == 1:
        return [request]
    samples = []
    for i in range(n):
        seed = request.sampling.seed
        sampling = dataclasses.replace(request.sampling, seed=None if seed is None else (seed + i) % 2**63)
        samples.append(
            dataclasses.replace(request, request_id=f"{request.request_id}-{i}", sampling=sampling)
        )
    return samples
