"""Engine on Hugging Face transformers' Qwen3.5 classes (CPU or one GPU), with dynamic batching.

Requests that arrive while a batch runs wait for the next one; a new batch waits `batch_wait_ms` for
company and takes up to `max_batch_size` requests. Each batch is one `generate` call on left-padded
prompts (the Gated DeltaNet layers zero padded positions, so padding does not leak into the
recurrent state), with each row keeping its own sampling parameters, stop strings, token budget and
cancellation. The decode loop runs on one worker thread; results cross back to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cluster.config import EngineConfig
from deployments.engines.base import (
    Engine,
    EngineInfo,
    EngineOverloadedError,
    GenerationDelta,
    GenerationRequest,
    PromptTooLongError,
)
from deployments.engines.detokenizer import IncrementalDetokenizer
from deployments.engines.prompting import MAX_DECODED_IMAGE_PIXELS, PreparedPrompt, PromptBuilder

log = logging.getLogger(__name__)

_END = object()


@dataclass
class _Row:
    """One request's state while it waits for and runs in a batch."""

    request: GenerationRequest
    prompt: PreparedPrompt
    queue: asyncio.Queue
    sampling: object  # sampling.RowSampling, built on the worker thread
    detokenizer: IncrementalDetokenizer
    max_tokens: int
    cancelled: bool = False
    finished: bool = False
    eos_token: int | None = None
    logprobs: list[float] = field(default_factory=list)


class TransformersEngine(Engine):
    """Qwen3.5 on transformers.

    Args:
        model_path: a local checkpoint folder or a Hugging Face id (resolved through HF's cache).
        config: engine settings (device, dtype, batching, limits).
        thinking_default: thinking mode when a chat request does not say.
        sampling_defaults: callable `thinking -> catalog.SamplingDefaults` for unset parameters.
        random_weights: the checkpoint is a random-weight demo (reported by `info`).
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
        self._device = "cpu"
        self._eos_ids: set[int] = set()
        self._pending: asyncio.Queue[_Row] | None = None
        self._scheduler: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._started = asyncio.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._started:
            if self._model is not None:
                return
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qwen-decode")
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
            self._pending = asyncio.Queue()
            self._scheduler = asyncio.create_task(self._schedule(), name="qwen-batch-scheduler")

    def _load(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3_5ForConditionalGeneration

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
        self._device = device
        self._model = model
        log.info(
            "loaded %s on %s (%s) in %.1fs%s",
            self.model_path,
            device,
            dtype,
            time.perf_counter() - started,
            " [RANDOM WEIGHTS: outputs are noise]" if self.random_weights else "",
        )

    async def shutdown(self) -> None:
        self._closing = True
        if self._pending is not None:
            while not self._pending.empty():
                row = self._pending.get_nowait()
                row.queue.put_nowait(GenerationDelta("", row.prompt.num_tokens, 0, finish_reason="abort"))
                row.queue.put_nowait(_END)
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scheduler
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._model = None

    async def check_health(self) -> None:
        if self._model is None or self._scheduler is None:
            raise RuntimeError("engine not started")
        if self._scheduler.done():
            raise RuntimeError(f"batch scheduler stopped: {self._scheduler.exception()!r}")

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
        if self._model is None or self._pending is None or self._closing:
            raise RuntimeError("engine is not running")
        if self._pending.qsize() >= self.max_pending:
            raise EngineOverloadedError(f"{self._pending.qsize()} requests already wait for this engine")
        thinking = self.thinking_default if request.enable_thinking is None else request.enable_thinking
        prompt = await asyncio.to_thread(self._builder.build, request, thinking)
        budget = self.config.max_model_len - prompt.num_tokens
        if request.sampling.max_tokens > budget:
            raise PromptTooLongError(
                f"this model's maximum context length is {self.config.max_model_len} tokens; the prompt has "
                f"{prompt.num_tokens} tokens and max_tokens asks for {request.sampling.max_tokens} more"
            )
        row = _Row(
            request=request,
            prompt=prompt,
            queue=asyncio.Queue(),
            sampling=None,
            detokenizer=IncrementalDetokenizer(self._decode, request.sampling.stop),
            max_tokens=request.sampling.max_tokens,
        )
        self._pending.put_nowait(row)
        try:
            while True:
                item = await row.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Client gone or consumer closed us early: free the row's slot in its batch.
            row.cancelled = True

    def _decode(self, ids) -> str:
        return self._builder.tokenizer.decode(ids, skip_special_tokens=True)

    # ---- batching --------------------------------------------------------------------------------
    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._pending.get()
            if self.config.batch_wait_ms > 0 and self._pending.qsize() + 1 < self.config.max_batch_size:
                await asyncio.sleep(self.config.batch_wait_ms / 1000)
            batch = [first]
            while len(batch) < self.config.max_batch_size and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            batch = [row for row in batch if not row.cancelled]
            if not batch:
                continue
            try:
                await loop.run_in_executor(self._executor, self._run_batch, batch, loop)
            except Exception as error:  # a failed batch must not take the engine down
                log.exception("batch of %d failed", len(batch))
                for row in batch:
                    if not row.finished:
                        row.finished = True
                        loop.call_soon_threadsafe(
                            row.queue.put_nowait, RuntimeError(f"generation failed: {error}")
                        )

    def _run_batch(self, batch: list[_Row], loop: asyncio.AbstractEventLoop) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessor, StoppingCriteria

        from deployments.engines.sampling import RowSampling, make_generator, sample_rows

        for row in batch:
            row.sampling = self._row_sampling(row, RowSampling, make_generator)
        tokenizer = self._builder.tokenizer
        pad_id = tokenizer.pad_token_id
        width = max(row.prompt.num_tokens for row in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            n = row.prompt.num_tokens
            input_ids[i, width - n :] = torch.tensor(row.prompt.input_ids)
            attention[i, width - n :] = 1
        kwargs = {"input_ids": input_ids.to(self._device), "attention_mask": attention.to(self._device)}
        vision = [row.prompt for row in batch if row.prompt.pixel_values is not None]
        if vision:
            kwargs["pixel_values"] = torch.cat([p.pixel_values for p in vision]).to(
                self._device, self._model.dtype
            )
            kwargs["image_grid_thw"] = torch.cat([p.image_grid_thw for p in vision]).to(self._device)
        rows_sampling = [row.sampling for row in batch]
        last_logprobs: list[torch.Tensor] = []

        class _PerRowSampler(LogitsProcessor):
            # Samples each row with its own parameters and leaves only that token finite, so
            # generate's greedy pick takes it.
            def __call__(self, ids, scores):
                tokens, logprobs = sample_rows(scores, ids[:, width:], rows_sampling)
                last_logprobs[:] = [logprobs]
                forced = torch.full_like(scores, float("-inf"))
                forced[torch.arange(len(tokens)), tokens.to(scores.device)] = 0.0
                return forced

        engine = self

        class _RowBookkeeping(StoppingCriteria):
            def __call__(self, ids, scores, **kwargs):
                new_tokens = ids[:, -1].tolist()
                logprobs = last_logprobs[0].tolist()
                done = [
                    engine._advance(row, tok, lp, loop)
                    for row, tok, lp in zip(batch, new_tokens, logprobs, strict=True)
                ]
                return torch.tensor(done, device=ids.device)

        generation_config = GenerationConfig(
            max_new_tokens=max(row.max_tokens for row in batch),
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=None,
            use_cache=True,
        )
        with torch.inference_mode():
            self._model.generate(
                **kwargs,
                generation_config=generation_config,
                logits_processor=[_PerRowSampler()],
                stopping_criteria=[_RowBookkeeping()],
            )
        for row in batch:  # rows still open ran into the batch's token limit
            if not row.finished:
                self._finish(row, "length", loop)

    def _row_sampling(self, row: _Row, row_sampling_cls, make_generator):
        params = row.request.sampling
        defaults = self.sampling_defaults(row.prompt.thinking)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return row_sampling_cls(
            temperature=pick(params.temperature, defaults.temperature),
            top_p=pick(params.top_p, defaults.top_p),
            top_k=pick(params.top_k, defaults.top_k),
            min_p=pick(params.min_p, defaults.min_p),
            presence_penalty=pick(params.presence_penalty, defaults.presence_penalty),
            generator=make_generator(params.seed),
        )

    def _advance(self, row: _Row, token: int, logprob: float, loop) -> bool:
        """Account one new token of `row`; returns whether the row is done."""
        if row.finished:
            return True
        if row.cancelled:
            row.finished = True
            return True
        if token in self._eos_ids:
            # The end-of-turn token is generated work: counted in usage (as vLLM and OpenAI count
            # it) and given a log-probability, but it adds no text.
            row.eos_token = token
            row.logprobs.append(logprob)
            self._finish(row, "stop", loop)
            return True
        text = row.detokenizer.add(token)
        row.logprobs.append(logprob)
        if row.detokenizer.stopped:
            self._emit(row, text, loop)
            self._finish(row, "stop", loop)
            return True
        if row.detokenizer.token_count >= row.max_tokens:
            self._emit(row, text, loop)
            self._finish(row, "length", loop)
            return True
        if text:
            self._emit(row, text, loop)
        return False

    def _emit(self, row: _Row, text: str, loop) -> None:
        delta = GenerationDelta(
            text=text, prompt_tokens=row.prompt.num_tokens, completion_tokens=row.detokenizer.token_count
        )
        loop.call_soon_threadsafe(row.queue.put_nowait, delta)

    def _finish(self, row: _Row, reason: str, loop) -> None:
        row.finished = True
        tokens = [self._decode([token]) for token in row.detokenizer.token_ids]
        if row.eos_token is not None:
            tokens.append(self._builder.tokenizer.convert_ids_to_tokens(row.eos_token))
        delta = GenerationDelta(
            text=row.detokenizer.flush(),
            prompt_tokens=row.prompt.num_tokens,
            completion_tokens=len(tokens),
            finish_reason=reason,
            logprobs=list(row.logprobs),
            tokens=tokens,
        )
        loop.call_soon_threadsafe(row.queue.put_nowait, delta)
        loop.call_soon_threadsafe(row.queue.put_nowait, _END)
