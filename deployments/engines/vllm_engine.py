"""Engine on vLLM's async engine (GPU). vLLM is imported only when this engine starts.

Engine arguments follow the Qwen3.5 model cards' `vllm serve` flags: the `qwen3` reasoning parser, the
configured max model length, and a per-prompt image limit (no video).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from cluster.config import ModelConfig
from deployments.engines.base import (
    Engine,
    EngineInfo,
    GenerationDelta,
    GenerationRequest,
    InvalidImageError,
    PromptTooLongError,
    StructuredOutput,
    TokenLogprob,
)
from deployments.engines.prompting import MAX_DECODED_IMAGE_PIXELS, decode_image, render_chat


def vllm_engine_kwargs(model_path: str, model: ModelConfig) -> dict[str, Any]:
    """The `AsyncEngineArgs` keyword arguments for one model config.

    User `engine_kwargs` override the derived values, as Ray Serve LLM's `engine_kwargs` do.
    """
    engine = model.engine
    kwargs: dict[str, Any] = {
        "model": model_path,
        "served_model_name": [model.public_name],
        "dtype": "auto" if engine.dtype == "auto" else engine.dtype,
        "max_model_len": engine.max_model_len,
        "reasoning_parser": "qwen3",
        "limit_mm_per_prompt": {"image": engine.max_images_per_prompt, "video": 0},
        "mm_processor_kwargs": {
            "min_pixels": engine.image_min_pixels,
            "max_pixels": engine.image_max_pixels,
        },
        "enable_prefix_caching": True,
        "tensor_parallel_size": 1,
        "disable_log_stats": False,
    }
    if engine.max_images_per_prompt == 0:
        kwargs["language_model_only"] = True
        kwargs.pop("limit_mm_per_prompt")
        kwargs.pop("mm_processor_kwargs")
    kwargs.update(engine.engine_kwargs)
    return kwargs


def vllm_sampling_kwargs(request: GenerationRequest, defaults) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments; unset values take the model card's defaults."""
    params = request.sampling
    pick = lambda value, default: default if value is None else value  # noqa: E731
    return {
        "max_tokens": params.max_tokens,
        "temperature": pick(params.temperature, defaults.temperature),
        "top_p": pick(params.top_p, defaults.top_p),
        "top_k": pick(params.top_k, defaults.top_k),
        "min_p": pick(params.min_p, defaults.min_p),
        "presence_penalty": pick(params.presence_penalty, defaults.presence_penalty),
        "stop": list(params.stop),
        "seed": params.seed,
        "logprobs": params.top_logprobs if params.logprobs else 0,
        "frequency_penalty": pick(params.frequency_penalty, 0.0),
        "logit_bias": dict(params.logit_bias) or None,
    }


def vllm_structured_kwargs(structured: StructuredOutput | None) -> dict[str, Any] | None:
    """`vllm.sampling_params.StructuredOutputsParams` keyword arguments (vLLM 0.33), or None.

    Same semantics as the transformers engine's xgrammar path: compact JSON (no free whitespace),
    `choice` from a JSON list of strings.
    """
    if structured is None:
        return None
    if structured.kind == "json_object":
        # vLLM's `json_object=True` admits any JSON value; OpenAI's json_object (and the transformers
        # engine) promise an object.
        return {"json": {"type": "object"}, "disable_any_whitespace": True}
    if structured.kind == "json_schema":
        return {"json": json.loads(structured.spec), "disable_any_whitespace": True}
    if structured.kind == "regex":
        return {"regex": structured.spec}
    if structured.kind == "choice":
        return {"choice": list(json.loads(structured.spec))}
    return {"grammar": structured.spec}


def _token_logprob(entry: dict, token: int, top: int) -> TokenLogprob:
    """One vLLM logprobs entry (`{id: Logprob(logprob, rank, decoded_token)}`) as a `TokenLogprob`."""
    chosen = entry[token]
    ranked = sorted(entry.items(), key=lambda item: item[1].rank or 0)[:top]
    return TokenLogprob(
        token=chosen.decoded_token or "",
        logprob=chosen.logprob,
        token_id=token,
        top=[(lp.decoded_token or "", lp.logprob) for _, lp in ranked],
    )


class VLLMEngine(Engine):
    """Qwen3.5 on vLLM's `AsyncLLM`."""

    def __init__(self, model_path: str, model: ModelConfig):
        self.model_path = model_path
        self.model = model
        self._engine = None
        self._tokenizer = None

    async def start(self) -> None:
        if self._engine is not None:
            return
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**vllm_engine_kwargs(self.model_path, self.model))
        self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = await self._engine.get_tokenizer()

    def prompt(self, request: GenerationRequest) -> tuple[dict[str, Any], bool]:
        """vLLM's prompt input for `request` (rendered text, decoded images) and whether it thinks.

        Raises:
            InvalidImageError: too many images, or one that does not decode.
        """
        spec = self.model.spec
        thinking = spec.thinking_default if request.enable_thinking is None else request.enable_thinking
        if request.sampling.structured is not None:
            thinking = False  # one semantics with the transformers engine (see structured.py)
        if request.prompt is not None:
            return {"prompt": request.prompt}, False
        images = request.images
        if len(images) > self.model.engine.max_images_per_prompt:
            raise InvalidImageError(
                f"the request carries {len(images)} images; this model accepts at most "
                f"{self.model.engine.max_images_per_prompt}",
                code="too_many_images",
            )
        prompt: dict[str, Any] = {"prompt": render_chat(self._tokenizer, request, thinking)}
        if images:
            prompt["multi_modal_data"] = {
                "image": [decode_image(image, i, MAX_DECODED_IMAGE_PIXELS) for i, image in enumerate(images)]
            }
        return prompt, thinking

    async def chat(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if self._engine is None:
            raise RuntimeError("engine is not running")
        prompt, thinking = self.prompt(request)
        sampling_kwargs = vllm_sampling_kwargs(request, self.model.spec.sampling(thinking))
        structured = vllm_structured_kwargs(request.sampling.structured)
        if structured is not None:
            sampling_kwargs["structured_outputs"] = StructuredOutputsParams(**structured)
        sampling = SamplingParams(**sampling_kwargs)
        emitted = 0
        streamed_logprobs = 0
        try:
            async for output in self._engine.generate(prompt, sampling, request.request_id):
                completion = output.outputs[0]
                text = completion.text
                done = output.finished
                delta = GenerationDelta(
                    text=text[emitted:],
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=(completion.finish_reason or "stop") if done else None,
                )
                if done and completion.logprobs:
                    delta.logprobs = [
                        entry[token].logprob
                        for entry, token in zip(completion.logprobs, completion.token_ids, strict=False)
                    ]
                if request.sampling.logprobs and completion.logprobs:
                    delta.token_logprobs = [
                        _token_logprob(entry, token, request.sampling.top_logprobs)
                        for entry, token in zip(
                            completion.logprobs[streamed_logprobs:],
                            completion.token_ids[streamed_logprobs:],
                            strict=False,
                        )
                    ]
                    streamed_logprobs = len(completion.logprobs)
                emitted = len(text)
                yield delta
        except ValueError as error:
            # vLLM validates prompt length inside generate and raises ValueError.
            if "maximum model length" in str(error) or "longer than" in str(error):
                raise PromptTooLongError(str(error)) from None
            raise
        finally:
            if self._engine is not None:
                await self._engine.abort(request.request_id)

    async def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("engine not started")
        await self._engine.check_health()

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def info(self) -> EngineInfo:
        return EngineInfo(
            model_path=self.model_path,
            max_model_len=self.model.engine.max_model_len,
            random_weights=self.model.random_weights,
            thinking_default=self.model.spec.thinking_default,
            device="cuda",
        )
