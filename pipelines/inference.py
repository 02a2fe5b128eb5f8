"""The inference stage: a Ray Data actor pool whose actors each hold the engine of one size (a branch
per size) or of every routed size (`batch.colocate_sizes`: one branch, one pool).

`__call__` is async, so Ray Data runs it on one event loop per actor and keeps several batches in
flight; every row of every in-flight batch is submitted to its size's engine at once, and each
engine's own dynamic batching groups them. A branch feeds its pool only rows of the sizes it holds; a
row of another size (none, in a job's pipeline) would pass through untouched. `classify` and `extract` rows decode
under their constraint (`TaskCatalog.structured`), so their answers validate unless cut by max_tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.batch_config import TaskSettings
from cluster.config import ModelConfig
from deployments.engines.base import (
    EngineOverloadedError,
    EngineRequestError,
    GenerationRequest,
    InvalidImageError,
    PromptTooLongError,
    SamplingParams,
)
from pipelines.schema import ErrorKind, fail_row, rows_of, to_work_table
from pipelines.tasks import TaskCatalog

log = logging.getLogger(__name__)

# Pause before asking an engine whose queue is full again.
OVERLOAD_RETRY_S = 0.05


class InferenceStage:
    """Generates the answer of every row routed to one of this actor's sizes.

    Args:
        models: the model config (engine settings and checkpoint) of each size this actor answers;
            one config for a size's own pool.
        cache_dir: where demo checkpoints were generated (by the driver, before the actors start).
        task_settings: prompt templates and token budgets.
        custom_prompt: the job's `--prompt`.
        temperature: sampling temperature; None takes the model card's default.
        seed: sampling seed.
    """

    def __init__(
        self,
        models: ModelConfig | list[ModelConfig],
        cache_dir: str,
        task_settings: TaskSettings,
        custom_prompt: str | None,
        temperature: float | None = None,
        seed: int | None = None,
    ):
        from deployments.engines.factory import create_engine

        models = [models] if isinstance(models, ModelConfig) else list(models)
        if not models:
            raise ValueError("an inference stage needs at least one model")
        self.model_names = {model.size: model.public_name for model in models}
        self.catalog = TaskCatalog(task_settings, custom_prompt)
        self.temperature = temperature
        self.seed = seed
        # A job's schema is the operator's, checked before the job starts, and every row shares it:
        # a slow compile is waited for once rather than failing the rows that arrive first.
        models = [
            model.model_copy(
                update={"engine": model.engine.model_copy(update={"grammar_compile_timeout_s": None})}
            )
            for model in models
        ]
        self.engines = {model.size: create_engine(model, Path(cache_dir)) for model in models}
        # Weights load here, while Ray Data's read and preprocessing tasks fill the first batches
        # (as Ray Data LLM's engine stage does); the first call only starts the decode loops, on the
        # event loop that runs every call.
        for engine in self.engines.values():
            engine.load()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, batch: pa.Table) -> pa.Table:
        self._loop = asyncio.get_running_loop()
        rows = rows_of(batch)
        mine = [row for row in rows if row["size"] in self.engines and row["error_kind"] is None]
        for size in {row["size"] for row in mine}:
            await self.engines[size].start()
        outcomes = await asyncio.gather(*(self._generate(row) for row in mine))
        failed = {
            row["size"]
            for row, outcome in zip(mine, outcomes, strict=True)
            if outcome == ErrorKind.INFERENCE_FAILED
        }
        for size in failed:
            # A dead engine would turn every later row into an error row; fail the job instead (a rerun
            # resumes), but let request-level failures on a healthy engine stand as error rows.
            await self.engines[size].check_health()
        return to_work_table(rows)

    async def shutdown(self) -> None:
        """Stop every engine's decode loop (on the loop that runs the calls)."""
        for engine in self.engines.values():
            await engine.shutdown()

    def __del__(self) -> None:
        # Ray Data drops the UDF when the pool shuts down gracefully; stop the engine's batch loop on
        # its own event loop so it ends cleanly instead of being destroyed while pending.
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        if on_loop:  # collected on the loop's own thread: waiting here would block the loop
            loop.create_task(self.shutdown())
            return
        try:
            asyncio.run_coroutine_threadsafe(self.shutdown(), loop).result(timeout=10)
        except Exception:  # the process is going away anyway
            log.debug("engine shutdown at exit failed", exc_info=True)

    def _request(self, row: dict[str, Any]) -> GenerationRequest:
        return GenerationRequest(
            request_id=f"{row['doc_id']}#{row['page']}",
            sampling=SamplingParams(
                max_tokens=self.catalog.max_tokens(row["task"]),
                temperature=self.temperature,
                seed=self.seed,
                structured=self.catalog.structured(row["task"]),
            ),
            messages=self.catalog.messages(row),
            enable_thinking=row["thinking"],
            stream=False,  # the job joins the answer: engines may produce it in one piece
            answer_logprobs=False,  # and reads no token probabilities
        )

    async def _chat(self, size: str, request: GenerationRequest) -> tuple[list[str], Any]:
        """The answer's pieces and its last delta; waits while the engine's queue is full (it refuses
        before producing anything, so asking again is safe)."""
        while True:
            pieces: list[str] = []
            last = None
            try:
                async for delta in self.engines[size].chat(request):
                    pieces.append(delta.text)
                    last = delta
            except EngineOverloadedError:
                await asyncio.sleep(OVERLOAD_RETRY_S)
                continue
            if last is None:
                raise RuntimeError("the engine produced no output")
            return pieces, last

    async def _generate(self, row: dict[str, Any]) -> str | None:
        """Fill one row's output (or its error); return the error kind, if any."""
        started = time.perf_counter()
        row["model"] = self.model_names[row["size"]]
        try:
            pieces, last = await self._chat(row["size"], self._request(row))
        except PromptTooLongError as error:
            fail_row(row, ErrorKind.PROMPT_TOO_LONG, error.message)
        except InvalidImageError as error:
            fail_row(row, ErrorKind.INVALID_IMAGE, error.message)
        except EngineRequestError as error:
            fail_row(row, ErrorKind.ENGINE_REJECTED, error.message)
        except Exception as error:  # one row's failure must not take its batch down
            log.exception("inference failed for %s page %s", row["doc_id"], row["page"])
            fail_row(row, ErrorKind.INFERENCE_FAILED, f"{type(error).__name__}: {error}")
        else:
            row["output"] = "".join(pieces)
            row["prompt_tokens"] = last.prompt_tokens
            row["completion_tokens"] = last.completion_tokens
            if last.finish_reason == "length" and self.catalog.structured(row["task"]) is not None:
                budget = self.catalog.max_tokens(row["task"])
                fail_row(
                    row,
                    ErrorKind.OUTPUT_TRUNCATED,
                    f"the {row['task']} answer reached max_tokens ({budget}) before it was complete; "
                    f"raise batch.tasks.max_tokens.{row['task']}",
                )
        row["latency_ms"] = (time.perf_counter() - started) * 1000
        row["image"] = None  # the payload is not needed past this stage; keep blocks small
        return row["error_kind"]
