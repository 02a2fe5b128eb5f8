"""Vectorised per-row sampling for a batch of requests that each carry their own sampling parameters.

Every row keeps its own temperature, top-k, top-p, min-p, presence and frequency penalties, logit
bias and seed, and the whole batch is sampled with a handful of tensor operations (no per-row loop):
the exponential-race (Gumbel-max) trick picks `argmax(log p - log E)` with `E ~ Exp(1)` drawn from a
counter-based hash of (row seed, row step, candidate), so a seeded row draws the same noise whatever
its neighbours are. When every sampled row has a top-k (the Qwen3.5 cards' defaults do), filtering
and the draw run on the `topk` candidates only; a full-vocabulary sort happens only when a row asks
for top-p without top-k. Log-probabilities are reported under the model's raw distribution (as vLLM
and OpenAI report them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK32 = 0xFFFFFFFF


@dataclass
class RowSampling:
    """Resolved sampling parameters of one row (no `None`s left)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float
    generator: torch.Generator | None = None
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    seed: int | None = None

    def draw_seed(self) -> int:
        """The 32-bit noise key of this row: its seed, else a draw from its generator."""
        if self.seed is not None:
            return self.seed & _MASK32
        generator = self.generator if self.generator is not None else make_generator(None)
        return int(torch.randint(0, 2**32, (1,), generator=generator).item())


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by the request's seed, or randomly when it has none."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@dataclass
class SamplingBatch:
    """The sampling parameters of a batch as tensors, one entry per row (built once per batch shape)."""

    temperature: torch.Tensor  # (B,) float; <= 0 means greedy
    top_k: torch.Tensor  # (B,) long; <= 0 means off
    top_p: torch.Tensor  # (B,) float
    min_p: torch.Tensor  # (B,) float
    presence: torch.Tensor  # (B,) float
    frequency: torch.Tensor  # (B,) float
    seeds: torch.Tensor  # (B,) long, 32-bit keys
    bias_rows: torch.Tensor | None = None  # (n,) long
    bias_ids: torch.Tensor | None = None  # (n,) long
    bias_values: torch.Tensor | None = None  # (n,) float
    top_logprobs: int = 0
    # Whether any row reads its sampled token's log-probability. On a 248k vocabulary the log-sum-exp
    # behind it takes 30 ms a step at 32 rows on one thread, so a batch where none does, and that
    # asks for no top alternatives (which need it too), skips it (`sample_batch`).
    chosen_logprobs: bool = True

    @classmethod
    def from_rows(
        cls, rows: list[RowSampling], seeds: list[int], top_logprobs: int = 0, chosen_logprobs: bool = True
    ) -> SamplingBatch:
        """Stack per-row parameters; `seeds` are the rows' 32-bit noise keys."""
        bias_rows, bias_ids, bias_values = [], [], []
        for i, row in enumerate(rows):
            for token, value in (row.logit_bias or {}).items():
                bias_rows.append(i)
                bias_ids.append(int(token))
                bias_values.append(float(value))
        has_bias = bool(bias_rows)
        return cls(
            temperature=torch.tensor([r.temperature for r in rows], dtype=torch.float32),
            top_k=torch.tensor([r.top_k for r in rows], dtype=torch.long),
            top_p=torch.tensor([r.top_p for r in rows], dtype=torch.float32),
            min_p=torch.tensor([r.min_p for r in rows], dtype=torch.float32),
            presence=torch.tensor([r.presence_penalty for r in rows], dtype=torch.float32),
            frequency=torch.tensor([r.frequency_penalty for r in rows], dtype=torch.float32),
            seeds=torch.tensor(seeds, dtype=torch.long),
            bias_rows=torch.tensor(bias_rows, dtype=torch.long) if has_bias else None,
            bias_ids=torch.tensor(bias_ids, dtype=torch.long) if has_bias else None,
            bias_values=torch.tensor(bias_values, dtype=torch.float32) if has_bias else None,
            top_logprobs=top_logprobs,
            chosen_logprobs=chosen_logprobs,
        )


@dataclass
class SampleResult:
    """What one sampling step chose, per row."""

    tokens: torch.Tensor  # (B,) long
    logprobs: torch.Tensor | None  # (B,) float, raw distribution; None when no row reads them
    top_ids: torch.Tensor | None = None  # (B, top_logprobs) long
    top_logprobs: torch.Tensor | None = None  # (B, top_logprobs) float


def count_tokens(generated: torch.Tensor, vocab: int) -> torch.Tensor:
    """(batch, vocab) float counts of each id in `generated` (batch, steps); negative ids ignored."""
    counts = torch.zeros(generated.shape[0], vocab, dtype=torch.float32)
    if generated.shape[1]:
        valid = generated >= 0
        counts.scatter_add_(1, generated.clamp(min=0, max=vocab - 1), valid.to(torch.float32))
    return counts


def apply_penalties(logits: torch.Tensor, counts: torch.Tensor | None, batch: SamplingBatch) -> torch.Tensor:
    """Logit bias, then presence (once per seen id) and frequency (per occurrence) penalties."""
    if batch.bias_rows is not None:
        logits = logits.index_put((batch.bias_rows, batch.bias_ids), batch.bias_values, accumulate=True)
    if counts is not None:
        has_presence = bool(torch.any(batch.presence != 0))
        has_frequency = bool(torch.any(batch.frequency != 0))
        if has_presence:
            logits = logits - (counts > 0).to(logits.dtype) * batch.presence[:, None]
        if has_frequency:
            logits = logits - counts * batch.frequency[:, None]
    return logits


def filter_logits(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    """Mask tokens outside each row's top-k, nucleus (top-p) and min-p sets with -inf.

    A `top_k` of 0 or less keeps every token. The most likely token always survives.
    """
    vocab = logits.shape[-1]
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
    remove = _sorted_removals(sorted_logits, top_k, top_p, min_p, vocab)
    mask = torch.zeros_like(remove).scatter(1, sorted_idx, remove)
    return logits.masked_fill(mask, float("-inf"))


def _sorted_removals(
    sorted_logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor, vocab: int
) -> torch.Tensor:
    """Which of the (descending) sorted candidates fall outside top-k, top-p or min-p."""
    width = sorted_logits.shape[-1]
    ranks = torch.arange(width)[None, :]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    remove = ranks >= k[:, None]
    probs = torch.softmax(sorted_logits.masked_fill(remove, float("-inf")), dim=-1)
    # Drop a token when the tokens ranked above it already reach top_p.
    cumulative_before = torch.cumsum(probs, dim=-1) - probs
    remove |= cumulative_before >= top_p[:, None]
    remove |= probs < (min_p[:, None] * probs[:, :1])
    remove[:, 0] = False
    return remove


def exponential_noise(seeds: torch.Tensor, steps: torch.Tensor, width: int) -> torch.Tensor:
    """-log(E) style Gumbel noise (batch, width), a pure function of (seed, step, column).

    A counter-based integer hash (lowbias32 constants kept under 2**31 so int64 products never
    overflow) gives each row reproducible uniforms without a per-row generator call.
    """
    columns = torch.arange(width, dtype=torch.long)[None, :]
    x = (seeds[:, None] * 0x2545F491 + steps[:, None] * 0x1B873593 + columns * 0x7FEB352D) & _MASK32
    for _ in range(2):
        x = x ^ (x >> 16)
        x = (x * 0x7FEB352D) & _MASK32
        x = x ^ (x >> 15)
        x = (x * 0x346CA68B) & _MASK32
        x = x ^ (x >> 16)
    uniform = (x.to(torch.float64) + 0.5) / 2.0**32
    return -torch.log(-torch.log(uniform)).to(torch.float32)


def sample_batch(
    logits: torch.Tensor,
    batch: SamplingBatch,
    steps: torch.Tensor,
    counts: torch.Tensor | None = None,
    raw_logits: torch.Tensor | None = None,
) -> SampleResult:
    """Pick the next token of every row.

    Args:
        logits: (batch, vocab) float logits of the last position, structured-output masks applied.
        batch: the rows' sampling parameters.
        steps: (batch,) tokens each row generated so far (the noise counter).
        counts: (batch, vocab) occurrences of each id in each row's output (for the penalties).
        raw_logits: the unmasked logits for reported log-probabilities (defaults to `logits`).
    """
    logits = logits.float()
    raw = logits if raw_logits is None else raw_logits.float()
    adjusted = apply_penalties(logits, counts, batch)
    greedy = batch.temperature <= 0
    tokens = torch.argmax(adjusted, dim=-1)
    if not bool(greedy.all()):
        temperature = torch.where(greedy, torch.ones_like(batch.temperature), batch.temperature)
        scaled = adjusted / temperature[:, None]
        vocab = scaled.shape[-1]
        sampled_rows = ~greedy
        if bool(torch.all(batch.top_k[sampled_rows] > 0)):
            # Every sampled row has a top-k: filter and draw among the top candidates only.
            width = int(batch.top_k[sampled_rows].max().clamp(max=vocab))
            values, indices = torch.topk(scaled, width, dim=-1)
            remove = _sorted_removals(values, batch.top_k, batch.top_p, batch.min_p, vocab)
            noisy = values.masked_fill(remove, float("-inf")) + exponential_noise(batch.seeds, steps, width)
            picked = indices.gather(1, noisy.argmax(dim=-1, keepdim=True)).squeeze(1)
        else:
            if bool(torch.any(batch.top_p[sampled_rows] < 1.0)) or bool(torch.any(batch.top_k > 0)):
                scaled = filter_logits(scaled, batch.top_k, batch.top_p, batch.min_p)
            elif bool(torch.any(batch.min_p > 0)):
                probs = torch.softmax(scaled, dim=-1)
                top = probs.max(dim=-1, keepdim=True).values
                scaled = scaled.masked_fill(probs < batch.min_p[:, None] * top, float("-inf"))
            picked = (scaled + exponential_noise(batch.seeds, steps, vocab)).argmax(dim=-1)
        tokens = torch.where(greedy, tokens, picked)
    if not batch.chosen_logprobs and batch.top_logprobs == 0:
        return SampleResult(tokens=tokens, logprobs=None)
    # (x - max) - log(sum(exp(x - max))), rounded as log_softmax rounds, without a (B, V) output.
    peak = raw.max(dim=-1, keepdim=True).values
    log_total = torch.log(torch.exp(raw - peak).sum(dim=-1, keepdim=True))
    chosen = ((raw.gather(1, tokens[:, None]) - peak) - log_total).squeeze(1)
    result = SampleResult(tokens=tokens, logprobs=chosen)
    if batch.top_logprobs > 0:
        top_values, top_ids = torch.topk(raw, min(batch.top_logprobs, raw.shape[-1]), dim=-1)
        result.top_ids = top_ids
        result.top_logprobs = (top_values - peak) - log_total
    return result
