"""The iteration-level (continuous) batching loop of the transformers engine.

One worker thread owns the model and the batch cache. Every iteration it (1) admits requests that
arrived since the last step, (2) runs one prefill chunk of the oldest admitted group, splicing the
group into the running batch once its prompts are done, and (3) runs one decode step for every
running row. Rows that finish or are cancelled leave the batch at once (their cache rows are
dropped), so a short request never waits for a long neighbour and no compute is spent on rows that
are done. Text rows admitted together are prefilled together (left-padded, chunked when long). Image
rows admitted together are prefilled in groups of up to `PREFILL_CHUNK_TOKENS` padded tokens, each
group in one forward (an image's tokens must be embedded whole) with every row's own mrope
positions; a longer image prompt goes alone. Each group joins the running batch once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import torch

from deployments.engines.base import EngineUnavailableError
from deployments.engines.decode_rows import Outbox, Row, RowOutput
from deployments.engines.kv_state import BatchState, select_cache_rows
from deployments.engines.sampling import SamplingBatch, sample_batch
from deployments.engines.structured import apply_bitmask

log = logging.getLogger(__name__)

# Prompt tokens one prefill chunk processes across its rows; long prompts are split so running rows
# keep decoding between chunks.
PREFILL_CHUNK_TOKENS = 2048
# How long an idle loop waits for requests still being tokenized, so a burst lands in one admission.
BURST_WAIT_S = 0.05
# Admission sizes kept for diagnostics: the latest only, as a server runs for weeks.
ADMISSIONS_KEPT = 1024


def vision_batches(rows: list[Row], budget: int = PREFILL_CHUNK_TOKENS) -> list[list[Row]]:
    """Split image rows (in order) into prefill groups whose padded size, rows x longest prompt,
    stays within `budget` tokens; a prompt longer than the budget forms a group of its own."""
    groups: list[list[Row]] = []
    width = 0
    for row in rows:
        n = row.prompt.num_tokens
        if groups and (len(groups[-1]) + 1) * max(width, n) <= budget:
            groups[-1].append(row)
            width = max(width, n)
        else:
            groups.append([row])
            width = n
    return groups


class EngineLoopError(EngineUnavailableError):
    """The decode loop crashed; every open request fails with it and the engine reports unhealthy."""


@dataclass
class _Prefill:
    """Rows admitted together whose prompts are being prefilled into their own cache."""

    rows: list[Row]
    ids: torch.Tensor  # (rows, width) left-padded
    mask: torch.Tensor  # (rows, width)
    positions: torch.Tensor  # (3, rows, width) mrope positions
    next_position: torch.Tensor  # (rows,)
    cache: object
    done: int = 0
    vision: dict | None = None


class DecodeLoop:
    """Continuous batching over one Qwen3.5 model. `run` is the worker thread's body.

    Args:
        model: a loaded `Qwen3_5ForConditionalGeneration` in eval mode.
        device: the model's device.
        pad_id: the tokenizer's pad id (fills left padding).
        image_token_id: the `<|image_pad|>` id.
        vocab_size: the logits width.
        output: builds deltas from sampled tokens (`RowOutput` factory: `() -> RowOutput`).
        grammars: the engine's `GrammarCache` (None without structured outputs).
        max_batch_size: most rows decoding or prefilling at once.
        batch_wait_s: how long a busy loop waits for requests still being tokenized.
        prefill_defer_steps: most decode steps a new request waits, while the running batch is at
            least half full, to be prefilled with later arrivals (see `_defer_admission`).
        loop: the event loop the rows' queues belong to.
    """

    def __init__(
        self, *, model, device, pad_id, image_token_id, vocab_size, output, grammars, max_batch_size,
        batch_wait_s, loop, prefill_defer_steps=0,
    ):  # fmt: skip
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.image_token_id = image_token_id
        self.vocab_size = vocab_size
        self.make_output = output
        self.grammars = grammars
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.prefill_defer_steps = prefill_defer_steps
        self._deferred = 0
        self.loop = loop
        self._cond = threading.Condition()
        self._inbox: deque[Row] = deque()
        self._preparing = 0
        self._stopping = False
        self.error: BaseException | None = None
        self._prefills: deque[_Prefill] = deque()
        self._rows: list[Row] = []
        self._state: BatchState | None = None
        self._params: SamplingBatch | None = None
        self._outbox = Outbox(loop)
        self.admissions: deque[int] = deque(maxlen=ADMISSIONS_KEPT)  # rows per admission, latest
        self.deferred_steps = 0  # steps arrivals sat out (diagnostics and tests)

    # ---- event-loop side -------------------------------------------------------------------------
    def preparing(self, delta: int) -> None:
        """Count requests being tokenized (+1 before, -1 after), so bursts are admitted together."""
        with self._cond:
            self._preparing += delta
            self._cond.notify()

    def submit(self, row: Row) -> None:
        """Queue a prepared row for the next admission."""
        with self._cond:
            if self.error is not None or self._stopping:
                raise EngineLoopError(f"engine loop is not running: {self.error!r}")
            self._inbox.append(row)
            self._cond.notify()

    @property
    def waiting(self) -> int:
        """Rows submitted and not yet admitted."""
        return len(self._inbox)

    def stop(self) -> None:
        """Ask the loop to end; open rows are aborted."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    # ---- worker thread ---------------------------------------------------------------------------
    def run(self) -> None:
        """Admit, prefill and decode until stopped; on a crash fail every open row and re-raise."""
        if str(self.device).startswith("cpu"):
            # Qwen3.5's linear-attention states decay towards zero and reach subnormal floats, which
            # x86 cores compute one to two orders of magnitude slower: a prefill chunk carrying such a
            # state took 130 ms instead of 33-36 (bench/engine_denormals.py). Flushing them
            # to zero changes only values below 1.2e-38. The flag is per thread: this is the thread
            # that runs every forward (torch's own intra-op threads follow it).
            torch.set_flush_denormal(True)
        try:
            with torch.inference_mode():
                while self._admit():
                    if self._prefills:
                        self._prefill_chunk()
                    if self._rows:
                        self._decode_step()
        except BaseException as error:
            log.exception("decode loop crashed")
            self.error = crash = error
            self._end_all(lambda out, row: self._fail_loop(out, row, crash))
            raise
        self._end_all(lambda out, row: out.abort(row))

    def _fail_loop(self, out: RowOutput, row: Row, error: BaseException) -> None:
        row.finished = True
        out.items.append((row.queue, EngineLoopError(f"the engine loop crashed: {error!r}")))

    def _end_all(self, end) -> None:
        with self._cond:
            self._stopping = True
            rows = list(self._inbox) + [r for p in self._prefills for r in p.rows] + self._rows
            self._inbox.clear()
        out = self.make_output()
        for row in rows:
            if not row.finished:
                end(out, row)
        self._flush(out)
        self._prefills.clear()
        self._rows, self._state = [], None

    def _admit(self) -> bool:
        """Move waiting rows into prefill groups; blocks while there is nothing to do."""
        with self._cond:
            while not self._stopping and not self._inbox and not self._rows and not self._prefills:
                self._cond.wait()
            if self._stopping:
                return False
            if self._inbox and self._preparing:
                # Requests are still being tokenized: give the burst a moment to land together.
                deadline = time.monotonic() + (BURST_WAIT_S if not self._rows else self.batch_wait_s)
                while self._preparing and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0 or len(self._inbox) >= self.max_batch_size:
                        break
                    self._cond.wait(left)
            if self._defer_admission():
                return True
            room = self.max_batch_size - len(self._rows) - sum(len(p.rows) for p in self._prefills)
            taken: list[Row] = []
            while self._inbox and len(taken) < room:
                row = self._inbox.popleft()
                if not row.cancelled:
                    taken.append(row)
        if taken:
            self.admissions.append(len(taken))
            text = [row for row in taken if row.prompt.pixel_values is None]
            if text:
                self._prefills.append(self._text_group(text))
            self._prefills.extend(
                self._vision_group(group)
                for group in vision_batches([row for row in taken if row.prompt.pixel_values is not None])
            )
        return True

    def _defer_admission(self) -> bool:
        """Whether waiting rows sit out this step (called under the lock).

        Each admission costs a prefill forward pass of its own, next to the decode step's, and on a
        small model a pass costs about the same whatever its rows: at c32 with 8-token answers 40% of
        the loop's time went to prefilling the three or four requests that arrived each step. So
        while the running batch is at least half full and fewer than a quarter of it waits, arrivals
        wait up to `prefill_defer_steps` decode steps and are prefilled together.
        """
        defer = (
            self._deferred < self.prefill_defer_steps
            and not self._prefills
            and 2 * len(self._rows) >= self.max_batch_size
            and 0 < len(self._inbox) < max(1, self.max_batch_size // 4)
        )
        self._deferred = self._deferred + 1 if defer else 0
        self.deferred_steps += defer
        return defer

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _left_padded(self, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' prompt ids left-padded to the longest, and the mask of real tokens."""
        width = max(row.prompt.num_tokens for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = row.prompt.num_tokens
            ids[i, width - n :] = torch.tensor(row.prompt.input_ids)
            mask[i, width - n :] = 1
        return ids, mask

    def _text_group(self, rows: list[Row]) -> _Prefill:
        ids, mask = self._left_padded(rows)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        lengths = mask.sum(-1)
        return _Prefill(rows, ids, mask, positions[None].expand(3, -1, -1), lengths, self._new_cache())

    def _vision_group(self, rows: list[Row]) -> _Prefill:
        ids, mask = self._left_padded(rows)
        # The model scatters image embeddings over the image tokens in row-major order, so the
        # rows' pixels and grids are concatenated in row order.
        grid = torch.cat([row.prompt.image_grid_thw for row in rows])
        token_types = (ids == self.image_token_id).to(torch.int)
        positions, deltas = self.model.model.get_rope_index(
            ids, token_types, image_grid_thw=grid, attention_mask=mask
        )
        vision = {
            "pixel_values": torch.cat([row.prompt.pixel_values for row in rows]).to(
                self.device, self.model.dtype
            ),
            "image_grid_thw": grid.to(self.device),
        }
        next_position = mask.sum(-1) + deltas.view(-1).cpu()
        return _Prefill(rows, ids, mask, positions, next_position, self._new_cache(), 0, vision)

    def _prefill_chunk(self) -> None:
        group = self._prefills[0]
        if any(row.cancelled for row in group.rows):
            keep = [i for i, row in enumerate(group.rows) if not row.cancelled]
            if not keep:
                self._prefills.popleft()
                return
            if group.vision is not None:  # prefilled in one forward, so not started yet: regroup
                group = self._prefills[0] = self._vision_group([group.rows[i] for i in keep])
            else:
                self._filter_group(group, keep)
        width = group.ids.shape[1]
        if group.vision is not None:
            end = width  # image tokens must be embedded in one forward
        else:
            end = min(width, group.done + max(16, PREFILL_CHUNK_TOKENS // len(group.rows)))
        out = self.model(
            input_ids=group.ids[:, group.done : end].to(self.device),
            attention_mask=group.mask[:, :end].to(self.device),
            position_ids=group.positions[:, :, group.done : end].to(self.device),
            past_key_values=group.cache,
            use_cache=True,
            logits_to_keep=1,
            **(group.vision or {}),
        )
        group.done = end
        if end < width:
            return
        self._prefills.popleft()
        state = BatchState(
            cache=group.cache,
            mask=group.mask,
            next_position=group.next_position.clone(),
            last_tokens=torch.zeros(len(group.rows), dtype=torch.long),
            counts=torch.zeros(len(group.rows), self.vocab_size),
        )
        params = _sampling_batch(group.rows)
        finished = self._sample(group.rows, state, params, out.logits[:, -1])
        keep = [i for i, row in enumerate(group.rows) if i not in finished]
        if not keep:
            return
        if len(keep) < len(group.rows):
            state.select(keep)
        rows = [group.rows[i] for i in keep]
        if self._state is None:
            self._state, self._rows = state, rows
        else:
            self._state.join(state)
            self._rows = self._rows + rows
        self._params = None

    def _filter_group(self, group: _Prefill, keep: list[int]) -> None:
        """Drop cancelled rows from a group, mid-prompt included."""
        index = torch.tensor(keep, dtype=torch.long)
        group.rows = [group.rows[i] for i in keep]
        group.ids = group.ids.index_select(0, index)
        group.mask = group.mask.index_select(0, index)
        group.positions = group.positions.index_select(1, index)
        group.next_position = group.next_position.index_select(0, index)
        if group.done:
            select_cache_rows(group.cache, index)

    def _decode_step(self) -> None:
        state = self._state
        if any(row.cancelled for row in self._rows):
            self._drop({i for i, row in enumerate(self._rows) if row.cancelled})
            if not self._rows:
                return
        rows = len(self._rows)
        mask = torch.cat([state.mask, torch.ones((rows, 1), dtype=state.mask.dtype)], dim=1)
        positions = state.next_position.view(1, rows, 1).expand(3, rows, 1)
        out = self.model(
            input_ids=state.last_tokens[:, None].to(self.device),
            attention_mask=self._decode_masks(mask),
            position_ids=positions.to(self.device),
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        state.mask = mask
        state.next_position = state.next_position + 1
        if self._params is None:
            self._params = _sampling_batch(self._rows)
        finished = self._sample(self._rows, state, self._params, out.logits[:, -1])
        if finished:
            self._drop(finished)

    def _decode_masks(self, mask: torch.Tensor) -> dict:
        """The per-layer-type masks of a one-token step, built once instead of by every forward."""
        keep = mask.to(self.device).bool()[:, None, None, :]
        if self.model.config._attn_implementation != "sdpa":
            keep = torch.zeros(keep.shape, dtype=self.model.dtype, device=self.device).masked_fill(
                ~keep, torch.finfo(self.model.dtype).min
            )
        # One-token steps never hold padding, so the linear-attention layers take no mask.
        return {"full_attention": keep, "linear_attention": None}

    def _drop(self, finished: set[int]) -> None:
        keep = [i for i in range(len(self._rows)) if i not in finished]
        self._rows = [self._rows[i] for i in keep]
        self._params = None
        if not keep:
            self._state = None
            return
        self._state.select(keep)

    def _sample(self, rows: list[Row], state: BatchState, params: SamplingBatch, logits) -> set[int]:
        """Sample one token per row, hand it to the row, and return the rows that are done."""
        out = self.make_output()
        failed: set[int] = set()
        logits = logits.float().cpu()
        raw = logits
        constrained = [i for i, row in enumerate(rows) if row.constraint is not None]
        if constrained:
            raw = logits.clone()
            bitmask = self.grammars.allocate(len(rows))
            for i in constrained:
                try:
                    rows[i].constraint.fill(bitmask, i)
                except Exception as error:  # one row's grammar must not take the batch down
                    out.fail(rows[i], error)
                    failed.add(i)
            live = [i for i in constrained if i not in failed]
            if live:
                apply_bitmask(logits, bitmask, live)
        steps = torch.tensor([row.steps for row in rows], dtype=torch.long)
        result = sample_batch(logits, params, steps, state.counts, raw_logits=raw)
        tokens = result.tokens
        state.last_tokens = tokens
        state.counts[torch.arange(len(rows)), tokens] += 1
        token_list = tokens.tolist()
        logprob_list = result.logprobs.tolist() if result.logprobs is not None else [None] * len(rows)
        top_ids = result.top_ids.tolist() if result.top_ids is not None else None
        top_lps = result.top_logprobs.tolist() if result.top_logprobs is not None else None
        for i, row in enumerate(rows):
            if i in failed:
                continue
            top = None
            if top_ids is not None and row.top_logprobs:
                n = row.top_logprobs
                top = [(out.token_text(t), lp) for t, lp in zip(top_ids[i][:n], top_lps[i][:n], strict=True)]
            try:
                if out.advance(row, token_list[i], logprob_list[i], top):
                    failed.add(i)
            except Exception as error:  # a row's bookkeeping failure ends that row only
                log.warning("row %s failed: %r", row.request.request_id, error)
                out.fail(row, error)
                failed.add(i)
        self._flush(out)
        return failed

    def _flush(self, out: RowOutput) -> None:
        self._outbox.put(out.items)


def _sampling_batch(rows: list[Row]) -> SamplingBatch:
    """The stacked sampling parameters of `rows`, computing log-probabilities only if one reads them."""
    return SamplingBatch.from_rows(
        [r.sampling for r in rows],
        [r.seed for r in rows],
        max(r.top_logprobs for r in rows),
        chosen_logprobs=any(r.reads_logprobs for r in rows),
    )
