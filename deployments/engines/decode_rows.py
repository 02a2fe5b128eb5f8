"""One request's state inside the decode loop, and what happens when it gets a token.

Each row keeps its own sampling parameters, stop strings, token budget, logprobs, grammar matcher and
cancellation flag; the loop hands it one sampled token at a time and collects the deltas it emits,
which cross to the event loop through an `Outbox` (one hop per batch of steps).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from deployments.engines.base import (
    EngineRequestError,
    GenerationDelta,
    GenerationRequest,
    TokenLogprob,
)
from deployments.engines.detokenizer import IncrementalDetokenizer
from deployments.engines.prompting import PreparedPrompt
from deployments.engines.sampling import RowSampling

END = object()  # the last item on a row's queue


@dataclass
class Row:
    """One request from admission to its last delta."""

    request: GenerationRequest
    prompt: PreparedPrompt
    queue: asyncio.Queue
    sampling: RowSampling
    seed: int
    detokenizer: IncrementalDetokenizer
    max_tokens: int
    constraint: Any | None = None  # structured.RowConstraint
    cancelled: bool = False
    finished: bool = False
    emitted: bool = False
    eos_token: int | None = None
    logprobs: list[float] = field(default_factory=list)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Tokens sampled so far (the row's noise counter)."""
        return self.detokenizer.token_count + (self.eos_token is not None)

    @property
    def reads_logprobs(self) -> bool:
        """Whether the caller reads this row's sampled-token log-probabilities (the answer's, or the
        client's `logprobs`)."""
        return self.request.answer_logprobs or self.request.sampling.logprobs

    @property
    def top_logprobs(self) -> int:
        """Alternatives reported per token (0 when logprobs are off)."""
        return self.request.sampling.top_logprobs if self.request.sampling.logprobs else 0


class RowOutput:
    """Turns sampled tokens into deltas for the rows of one step; `items` go to the event loop."""

    def __init__(self, eos_ids: set[int], token_text, decode):
        self.eos_ids = eos_ids
        self.token_text = token_text  # id -> text of that single token (cached by the caller)
        self.decode = decode
        self.items: list[tuple[asyncio.Queue, Any]] = []

    def advance(
        self, row: Row, token: int, logprob: float | None, top: list[tuple[str, float]] | None
    ) -> bool:
        """Account one new token of `row` (`logprob` None when its batch computed none); returns
        whether the row is done."""
        if row.finished:
            return True
        if row.cancelled:
            row.finished = True
            return True
        if row.request.sampling.logprobs:
            row.pending_logprobs.append(TokenLogprob(self.token_text(token), logprob, token, top or []))
        if row.constraint is not None and not row.constraint.accept(token):
            raise RuntimeError(f"the grammar rejected sampled token {token}")
        if token in self.eos_ids:
            # The end-of-turn token is generated work: counted in usage (as vLLM and OpenAI count
            # it) and given a log-probability, but it adds no text.
            row.eos_token = token
            self._keep_logprob(row, logprob)
            self.finish(row, "stop")
            return True
        text = row.detokenizer.add(token)
        self._keep_logprob(row, logprob)
        if row.detokenizer.stopped or (row.constraint is not None and row.constraint.terminated):
            self.emit(row, text)
            self.finish(row, "stop")
            return True
        if row.detokenizer.token_count >= row.max_tokens:
            self.emit(row, text)
            self.finish(row, "length")
            return True
        if text or row.pending_logprobs:
            self.emit(row, text)
        return False

    @staticmethod
    def _keep_logprob(row: Row, logprob: float | None) -> None:
        if logprob is not None and row.reads_logprobs:
            row.logprobs.append(logprob)

    def emit(self, row: Row, text: str) -> None:
        """Queue a delta with the text and streamed logprobs since the previous one."""
        if not text and not row.pending_logprobs:
            return
        delta = GenerationDelta(
            text=text, prompt_tokens=row.prompt.num_tokens, completion_tokens=row.detokenizer.token_count
        )
        if row.request.sampling.logprobs:
            delta.token_logprobs, row.pending_logprobs = row.pending_logprobs, []
        row.emitted = True
        self.items.append((row.queue, delta))

    def finish(self, row: Row, reason: str) -> None:
        """Queue the last delta (usage, logprobs, token texts) and the end marker."""
        row.finished = True
        tokens = [self.token_text(token) for token in row.detokenizer.token_ids]
        if row.eos_token is not None:
            tokens.append(self.token_text(row.eos_token, special=True))
        delta = GenerationDelta(
            text=row.detokenizer.flush(),
            prompt_tokens=row.prompt.num_tokens,
            completion_tokens=len(tokens),
            finish_reason=reason,
            logprobs=list(row.logprobs),
            tokens=tokens,
        )
        if row.request.sampling.logprobs:
            delta.token_logprobs, row.pending_logprobs = row.pending_logprobs, []
        row.emitted = True
        self.items.append((row.queue, delta))
        self.items.append((row.queue, END))

    def fail(self, row: Row, error: BaseException) -> None:
        """End `row` with an error: a request error before its first delta, else a runtime error."""
        row.finished = True
        if not row.emitted:
            param = None
            if row.request.sampling.structured is not None:
                param = "response_format"
            failure: BaseException = EngineRequestError(f"generation failed for this request: {error}", param)
        else:
            failure = RuntimeError(f"generation failed: {error}")
        self.items.append((row.queue, failure))

    def abort(self, row: Row) -> None:
        """End `row` because the engine shuts down."""
        row.finished = True
        self.items.append(
            (row.queue, GenerationDelta("", row.prompt.num_tokens, row.steps, finish_reason="abort"))
        )
        self.items.append((row.queue, END))


class Outbox:
    """Deltas on their way from the worker thread to the event loop, one wake-up per batch of steps.

    While a delivery is still pending, later steps add to it instead of writing to the loop's
    self-pipe again (each write is a GIL hand-off), and a row's undelivered deltas merge into one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue, Any]] = []
        self._last: dict[int, int] = {}  # id(queue) -> index of its last item
        self._pending = False

    def put(self, items: list[tuple[asyncio.Queue, Any]]) -> None:
        """Queue `items` (worker thread); schedules a delivery unless one is pending."""
        if not items:
            return
        with self._lock:
            for queue, item in items:
                at = self._last.get(id(queue))
                merged = _merge(self._items[at][1], item) if at is not None else None
                if merged is not None:
                    self._items[at] = (queue, merged)
                else:
                    self._last[id(queue)] = len(self._items)
                    self._items.append((queue, item))
            if self._pending:
                return
            self._pending = True
        self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items, self._last = self._items, [], {}
            self._pending = False
        for queue, item in items:
            queue.put_nowait(item)


def _merge(earlier, later):
    """One delta for two consecutive undelivered ones of a row, or None when they must stay apart
    (a final delta, an end marker or an error)."""
    if not isinstance(earlier, GenerationDelta) or not isinstance(later, GenerationDelta):
        return None
    if earlier.finish_reason is not None or later.finish_reason is not None:
        return None
    token_logprobs = None
    if earlier.token_logprobs is not None or later.token_logprobs is not None:
        token_logprobs = (earlier.token_logprobs or []) + (later.token_logprobs or [])
    return GenerationDelta(
        text=earlier.text + later.text,
        prompt_tokens=later.prompt_tokens,
        completion_tokens=later.completion_tokens,
        token_logprobs=token_logprobs,
    )
