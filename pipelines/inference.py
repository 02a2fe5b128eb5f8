"""The inference stage: one Ray Data actor pool per model size, each actor holding one engine.

`__call__` is async, so Ray Data runs it on one event loop per actor and keeps several batches in
flight; every row of every in-flight batch is submitted to the engine at once, and the engine's own
dynamic batching groups them. Each size's branch feeds its pool only its own rows; a row of another
size (none, in a job's pipeline) would pass through untouched. `classify` and `extract` rows decode
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
    """Generates the answer of every row routed to this actor's size.

    Args:
        model: the size's model config (engine settings and checkpoint).
        cache_dir: where demo checkpoints were generated (by the driver, before the actors start).
        task_settings: prompt templates and token budgets.
        custom_prompt: the job's `--prompt`.
        temperature: sampling temperature; None takes the model card's default.
        seed: sampling seed.
    """

    def __init__(
        self,
        model: ModelConfig,
        cache_dir: str,
        task_settings: TaskSettings,
        custom_prompt: str | None,
        temperature: float | None = None,
        seed: int | None = None,
    ):
        from deployments.engines.factory import create_engine

        self.size = model.size
        self.model_name = model.public_name
        self.catalog = TaskCatalog(task_settings, custom_prompt)
        self.temperature = temperature
        self.seed = seed
        self.engine = create_engine(model, Path(cache_dir))
        # Weights load here, while Ray Data's read and preprocessing tasks fill the first batches
        # (as Ray Data LLM's engine stage does); the first call only starts the decode loop, on the
        # event loop that runs every call.
        self.engine.load()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, batch: pa.Table) -> pa.Table:
        self._loop = asyncio.get_running_loop()
        await self.engine.start()
        rows = rows_of(batch)
        mine = [row for row in rows if row["size"] == self.size and row["error_kind"] is None]
        outcomes = await asyncio.gather(*(self._generate(row) for row in mine))
        if ErrorKind.INFERENCE_FAILED in outcomes:
            # A dead engine would turn every later row into an error row; fail the job instead (a rerun
            # resumes), but let request-level failures on a healthy engine stand as error rows.
            await self.engine.check_health()
        return to_work_table(rows)

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
            loop.create_task(self.engine.shutdown())
            return
        try:
            asyncio.run_coroutine_threadsafe(self.engine.shutdown(), loop).result(timeout=10)
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
        )

    async def _chat(self, request: GenerationRequest) -> tuple[list[str], Any]:
        """The answer's pieces and its last delta; waits while the engine's queue is full (it refuses
        before producing anything, so asking again is safe)."""
        while True:
            pieces: list[str] = []
            last = None
            try:
                async for delta in self.engine.chat(request):
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
        row["model"] = self.model_name
        try:
            pieces, last = await self._chat(self._request(row))
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
