"""Per-row sampling for a batch of requests that each carry their own sampling parameters.

Hugging Face `generate` applies one set of parameters to a whole batch. Requests batched together
here each keep theirs: temperature, top-k, top-p, min-p, presence penalty and a seeded generator per
row. The chosen token's log-probability (under the model's raw distribution, as vLLM and OpenAI
report it) is recorded for confidence-based escalation and the `logprobs` option.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RowSampling:
    """Resolved sampling parameters of one row (no `None`s left)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float
    generator: torch.Generator


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded by the request's seed, or randomly when it has none."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def apply_presence_penalty(
    logits: torch.Tensor, generated: torch.Tensor, penalties: torch.Tensor
) -> torch.Tensor:
    """Subtract each row's penalty from every token id that row has already generated.

    Args:
        logits: (batch, vocab) float logits.
        generated: (batch, steps) token ids generated so far (may have zero columns).
        penalties: (batch,) penalty per row.
    """
    if generated.shape[1] == 0 or not torch.any(penalties != 0):
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen.scatter_(1, generated.clamp(min=0, max=logits.shape[1] - 1), True)
    return logits - seen.to(logits.dtype) * penalties[:, None]


def filter_logits(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    """Mask tokens outside each row's top-k, nucleus (top-p) and min-p sets with -inf.

    A `top_k` of 0 or less keeps every token. The most likely token always survives.
    """
    vocab = logits.shape[-1]
    sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)[None, :]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    remove = ranks >= k[:, None]
    probs = torch.softmax(sorted_logits, dim=-1)
    # Drop a token when the tokens ranked above it already reach top_p.
    cumulative_before = torch.cumsum(probs, dim=-1) - probs
    remove |= cumulative_before >= top_p[:, None]
    remove |= probs < (min_p[:, None] * probs[:, :1])
    remove[:, 0] = False
    mask = torch.zeros_like(remove).scatter(1, sorted_idx, remove)
    return logits.masked_fill(mask, float("-inf"))


def sample_rows(
    logits: torch.Tensor, generated: torch.Tensor, rows: list[RowSampling]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the next token of every row.

    Args:
        logits: (batch, vocab) raw logits of the last position.
        generated: (batch, steps) ids generated so far (for the presence penalty).
        rows: one `RowSampling` per batch row.

    Returns:
        (tokens, logprobs): the chosen ids (batch,) and their log-probabilities under the raw
        model distribution (batch,).
    """
    # Sampling runs on the CPU: per-row generators are CPU generators, and the copy is small next to
    # a forward pass.
    logits = logits.float().cpu()
    generated = generated.cpu()
    raw_logprobs = torch.log_softmax(logits, dim=-1)
    penalties = torch.tensor([r.presence_penalty for r in rows], dtype=logits.dtype)
    adjusted = apply_presence_penalty(logits, generated, penalties)
    temperatures = torch.tensor([r.temperature for r in rows], dtype=logits.dtype)
    greedy = temperatures <= 0
    scaled = adjusted / torch.where(greedy, torch.ones_like(temperatures), temperatures)[:, None]
    filtered = filter_logits(
        scaled,
        torch.tensor([r.top_k for r in rows]),
        torch.tensor([r.top_p for r in rows], dtype=logits.dtype),
        torch.tensor([r.min_p for r in rows], dtype=logits.dtype),
    )
    probs = torch.softmax(filtered, dim=-1)
    tokens = torch.empty(len(rows), dtype=torch.long)
    for i, row in enumerate(rows):
        if greedy[i]:
            tokens[i] = torch.argmax(adjusted[i])
        else:
            tokens[i] = torch.multinomial(probs[i], num_samples=1, generator=row.generator)[0]
    chosen = raw_logprobs.gather(1, tokens[:, None]).squeeze(1)
    return tokens, chosen
