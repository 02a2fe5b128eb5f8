"""Engine on Hugging Face transformers' Qwen3.5 classes (CPU or one GPU), with continuous batching.

Requests are tokenized off the event loop, then handed to a `DecodeLoop` that runs on one daemon
thread and schedules per iteration: new requests join the running batch between decode steps and
finished or cancelled ones leave it at once (see `decode_loop`). Each row keeps its own sampling
parameters, stop strings, token budget, logprobs, structured-output grammar and cancellation;
results cross back to the event loop once per step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator

from cluster.config import EngineConfig
from deployments.engines.base import (
    Engine,
    EngineInfo,
    EngineOverloadedError,
    EngineRequestError,
    GenerationDelta,
    GenerationRequest,
    PromptTooLongError,
    StructuredOutput,
    check_local_checkpoint,
    merge_deltas,
)
from deployments.engines.decode_rows import END, Row, RowOutput
from deployments.engines.detokenizer import IncrementalDetokenizer
from deployments.engines.prompting import MAX_DECODED_IMAGE_PIXELS, PromptBuilder
from deployments.engines.structured import structured_param

log = logging.getLogger(__name__)


def _start_daemon(loop: asyncio.AbstractEventLoop, target, name: str) -> asyncio.Future:
    """Run `target` on a daemon thread; the future settles on `loop` with its outcome.

    The decode loop runs until stopped. On an executor thread, an engine nobody shut down (a dropped
    batch UDF, a test's fixture) would be joined at interpreter exit and hang the process forever.
    """
    future = loop.create_future()

    def settle(result, error) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def main() -> None:
        result, error = None, None
        try:
            result = target()
        except BaseException as raised:  # noqa: BLE001 - handed to the awaiting coroutine
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future


class TransformersEngine(Engine):
    """Qwen3.5 on transformers.

    Args:
        model_path: a local checkpoint folder or a Hugging Face id (resolved through HF's cache).
        config: engine settings (device, dtype, batching, limits).
        thinking_default: thinking mode when a chat request does not say.
        sampling_defaults: callable `thinking -> catalog.SamplingDefaults` for unset parameters.
        random_weights: the checkpoint is a random-weight demo (reported by `info`).
        max_pending: most requests waiting for admission before new ones get `EngineOverloadedError`.
    """

    def __init__(
        self,
        model_path: str,
        config: EngineConfig,
        *,
        thinking_default: bool,
        sampling_defaults,
        random_weights: bool = False,
        max_pending: int = 1024,
    ):
        self.model_path = model_path
        self.config = config
        self.thinking_default = thinking_default
        self.sampling_defaults = sampling_defaults
        self.random_weights = random_weights
        self.max_pending = max_pending
        self._model = None
        self._builder: PromptBuilder | None = None
        self._grammars = None
        self._device = "cpu"
        self._eos_ids: set[int] = set()
        self._token_texts: dict[tuple[int, bool], str] = {}
        self._fast_decode = None  # the Rust tokenizer's decode, when it matches the HF wrapper
        self._seeds = random.Random()
        self._loop_runner = None  # decode_loop.DecodeLoop
        self._worker: asyncio.Future | None = None
        self._closing = False
        self._started = asyncio.Lock()
        self._loading = threading.Lock()
        # Grammars compile on their own thread, as vLLM compiles them apart from its scheduler: a
        # schema that takes seconds to compile delays only the structured requests queued behind it,
        # not the tokenizing of every other request in the shared worker pool. One thread also keeps
        # the GrammarCache's LRU single-threaded.
        self._compile_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qwen-grammar")

    # ---- lifecycle -------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the tokenizer, image processor and weights now, on this thread (see `Engine.load`)."""
        with self._loading:
            if self._model is None:
                self._load()

    async def start(self) -> None:
        async with self._started:
            if self._model is not None and self._loop_runner is not None:
                return
            # Resolve transformers' lazy symbols and xgrammar here, on the event-loop thread: several
            # engines loading at once on their own threads race inside transformers' lazy module
            # (seen as "cannot import name 'AutoImageProcessor'").
            import transformers
            import xgrammar  # noqa: F401

            from deployments.engines.decode_loop import DecodeLoop

            for name in ("AutoImageProcessor", "AutoTokenizer", "Qwen3_5ForConditionalGeneration"):
                getattr(transformers, name)
            loop = asyncio.get_running_loop()
            await asyncio.to_thread(self.load)
            model = self._model
            tokenizer = self._builder.tokenizer
            self._loop_runner = DecodeLoop(
                model=model,
                device=self._device,
                pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                image_token_id=model.config.image_token_id,
                vocab_size=model.config.text_config.vocab_size,
                output=lambda: RowOutput(self._eos_ids, self._token_text, self._decode),
                grammars=self._grammars,
                max_batch_size=self.config.max_batch_size,
                batch_wait_s=self.config.batch_wait_ms / 1000,
                prefill_defer_steps=self.config.prefill_defer_steps,
                loop=loop,
            )
            self._worker = _start_daemon(loop, self._loop_runner.run, name="qwen-decode-loop")

    def _load(self) -> None:
        check_local_checkpoint(self.model_path)
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3_5ForConditionalGeneration

        from deployments.engines import linear_attention
        from deployments.engines.packed_linear import pack_linear_layers
        from deployments.engines.structured import GrammarCache

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" else "float32"
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        image_processor = AutoImageProcessor.from_pretrained(
            self.model_path,
            min_pixels=self.config.image_min_pixels,
            max_pixels=self.config.image_max_pixels,
            backend="pil",
        )
        model = Qwen3_5ForConditionalGeneration.from_pretrained(self.model_path, dtype=getattr(torch, dtype))
        model.to(device).eval()
        linear_attention.install()
        # Only bfloat16 layers on the CPU qualify (`packed_linear`): on a GPU or in float32 none does.
        packed = pack_linear_layers(model) if self.config.pack_cpu_weights else 0
        tokenizer.padding_side = "left"
        self._builder = PromptBuilder(
            tokenizer,
            image_processor,
            self.config.max_images_per_prompt,
            max_decoded_pixels=MAX_DECODED_IMAGE_PIXELS,
        )
        self._eos_ids = {
            i
            for i in (tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
            if i is not None
        }
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and not tokenizer.clean_up_tokenization_spaces:
            # The wrapper's decode converts every id list to Python objects first: a third of the
            # per-token bookkeeping. Same text, as long as no clean-up pass is configured.
            self._fast_decode = backend.decode
        self._grammars = GrammarCache(tokenizer, model.config.text_config.vocab_size, sorted(self._eos_ids))
        self._device = device
        self._model = model
        log.info(
            "loaded %s on %s (%s%s) in %.1fs%s",
            self.model_path,
            device,
            dtype,
            f", {packed} linear layers packed for oneDNN" if packed else "",
            time.perf_counter() - started,
            " [RANDOM WEIGHTS: outputs are noise]" if self.random_weights else "",
        )

    async def shutdown(self) -> None:
        self._closing = True
        self._compile_pool.shutdown(wait=False, cancel_futures=True)
        if self._loop_runner is not None:
            self._loop_runner.stop()
        if self._worker is not None:
            with contextlib.suppress(BaseException):
                await self._worker
        self._model = None

    async def check_health(self) -> None:
        if self._model is None or self._worker is None:
            raise RuntimeError("engine not started")
        if self._loop_runner.error is not None:
            raise RuntimeError(f"decode loop crashed: {self._loop_runner.error!r}")
        if self._worker.done():
            raise RuntimeError("decode loop stopped")

    def info(self) -> EngineInfo:
        return EngineInfo(
            model_path=self.model_path,
            max_model_len=self.config.max_model_len,
            random_weights=self.random_weights,
            thinking_default=self.thinking_default,
            device=self._device,
        )

    # ---- requests --------------------------------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        runner = self._loop_runner
        if self._model is None or runner is None or self._closing:
            raise RuntimeError("engine is not running")
        if runner.waiting >= self.max_pending:
            raise EngineOverloadedError(f"{runner.waiting} requests already wait for this engine")
        runner.preparing(+1)
        try:
            row = await asyncio.to_thread(self._prepare, request)
            if request.sampling.structured is not None:
                row.constraint = await self._constraint(request.sampling.structured)
            runner.submit(row)
        finally:
            runner.preparing(-1)
        try:
            held = None
            while True:
                item = held if held is not None else await row.queue.get()
                held = None
                # Deltas that arrived while the consumer was busy (or pacing itself, as
                # `ModelServer.generate_stream` does) leave as one: one message per batch, not per token.
                while isinstance(item, GenerationDelta) and item.finish_reason is None and not row.queue.empty():
                    following = row.queue.get_nowait()
                    if not isinstance(following, GenerationDelta):
                        held = following
                        break
                    item = merge_deltas(item, following)
                if item is END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Client gone or consumer closed us early: the loop frees the row at its next step.
            row.cancelled = True

    async def _constraint(self, spec: StructuredOutput):
        """`spec`'s grammar matcher, compiled on the grammar thread within
        `grammar_compile_timeout_s` of the compile starting (time queued behind other compiles does
        not count against it; None waits for it).

        Raises:
            EngineRequestError: the compile ran past the limit (it finishes on its thread, and the
                compiled grammar is cached for the next request with the same spec).
        """
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def compile_constraint():
            loop.call_soon_threadsafe(started.set)
            return self._grammars.constraint(spec)

        compiled = loop.run_in_executor(self._compile_pool, compile_constraint)
        try:
            await started.wait()
        except asyncio.CancelledError:
            compiled.cancel()  # still queued: it never runs
            raise
        limit = self.config.grammar_compile_timeout_s
        if limit is None:
            return await compiled
        try:
            return await asyncio.wait_for(asyncio.shield(compiled), limit)
        except TimeoutError:
            raise EngineRequestError(
                f"the {spec.kind.replace('_', ' ')} did not compile into a grammar within {limit:g} s "
                "(engine.grammar_compile_timeout_s); fewer optional properties, shorter enums or a "
                "simpler pattern compile faster",
                param=structured_param(spec),
            ) from None

    def _prepare(self, request: GenerationRequest) -> Row:
        """Tokenize, check the budget and resolve sampling (worker pool); `chat` adds the grammar."""
        from deployments.engines.sampling import RowSampling

        params = request.sampling
        thinking = self.thinking_default if request.enable_thinking is None else request.enable_thinking
        if params.structured is not None:
            thinking = False  # the whole completion is the constrained value (see structured.py)
        prompt = self._builder.build(request, thinking)
        budget = self.config.max_model_len - prompt.num_tokens
        if params.max_tokens > budget:
            raise PromptTooLongError(
                f"this model's maximum context length is {self.config.max_model_len} tokens; the prompt has "
                f"{prompt.num_tokens} tokens and max_tokens asks for {params.max_tokens} more"
            )
        defaults = self.sampling_defaults(prompt.thinking)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        sampling = RowSampling(
            temperature=pick(params.temperature, defaults.temperature),
            top_p=pick(params.top_p, defaults.top_p),
            top_k=pick(params.top_k, defaults.top_k),
            min_p=pick(params.min_p, defaults.min_p),
            presence_penalty=pick(params.presence_penalty, defaults.presence_penalty),
            frequency_penalty=pick(params.frequency_penalty, 0.0),
            logit_bias=dict(params.logit_bias) or None,
            seed=params.seed,
        )
        seed = params.seed & 0xFFFFFFFF if params.seed is not None else self._seeds.getrandbits(32)
        return Row(
            request=request,
            prompt=prompt,
            queue=asyncio.Queue(),
            sampling=sampling,
            seed=seed,
            detokenizer=IncrementalDetokenizer(self._decode, params.stop),
            max_tokens=params.max_tokens,
        )

    def _decode(self, ids) -> str:
        if self._fast_decode is not None:
            return self._fast_decode(ids, skip_special_tokens=True)
        return self._builder.tokenizer.decode(ids, skip_special_tokens=True)

    def _token_text(self, token: int, special: bool = False) -> str:
        """The text of one token id (special tokens spelled out when `special`), cached."""
        key = (token, special)
        text = self._token_texts.get(key)
        if text is None:
            tokenizer = self._builder.tokenizer
            text = tokenizer.convert_ids_to_tokens(token) if special else self._decode([token])
            self._token_texts[key] = text
        return text
