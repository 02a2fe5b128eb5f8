"""Qwen3.5's linear-attention layers on the CPU: transformers' reference code against
deployments/engines/linear_attention.py (prints numbers; not a test).

Two parts, both alternating reference and ours (or, with `--chunks`, a third alone: our prefill rule
in 64-token chunks, as the reference runs it, against its own choice of chunk length,
`linear_attention.chunk_length`, over short and long prompts; same results, float rounding aside):
1. Each replaced function alone, at the shapes the transformers engine gives it (one torch thread):
   the decode step at 32 rows (2 heads: the demo checkpoint; 16: the real 0.8B), the chunked rule on
   a 32-row prefill chunk of 64 tokens and on whole prompts, the causal convolution on a first chunk
   (a time-major input; a later chunk's is contiguous and runs the reference's conv1d in both).
2. The transformers engine alone on the batch job's load (bench/engine_denormals.py's harness:
   documents of about 70 words, "Summarize in one sentence:", `--max-tokens` greedy tokens,
   `--inflight` requests at once, one torch thread), with the reference functions and with ours.

Usage: .venv/bin/python bench/linear_attention.py [--rows 256] [--rounds 2] [--max-tokens 32] [--chunks]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def per_call_ms(function, repeats: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1e3


def rule_inputs(batch: int, length: int, heads: int) -> tuple:
    """Random (query, key, value, g, beta, state) for a gated delta rule at 128-wide heads."""
    import torch

    q, k, v = (torch.randn(batch, length, heads, 128) for _ in range(3))
    g, beta = -torch.rand(batch, length, heads) * 0.3, torch.rand(batch, length, heads)
    return q, k, v, g, beta, torch.randn(batch, heads, 128, 128) * 0.1


def call_rule(function, inputs: tuple):
    """One call of a gated delta rule on `inputs` (rule_inputs), with a fresh copy of the state: ours
    updates the one it is given in place."""
    q, k, v, g, beta, state = inputs
    return function(q, k, v, g, beta, initial_state=state.clone(), output_final_state=True,
                    use_qk_l2norm_in_kernel=True)  # fmt: skip


def function_cases():
    """(label, reference call, our call) at the engine's shapes."""
    import torch
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    from deployments.engines import linear_attention as ours

    for label, (batch, length, heads), reference, mine in (
        ("decode step, 32 rows x 2 heads", (32, 1, 2), qwen.torch_recurrent_gated_delta_rule, ours.recurrent_gated_delta_rule),
        ("decode step, 32 rows x 16 heads", (32, 1, 16), qwen.torch_recurrent_gated_delta_rule, ours.recurrent_gated_delta_rule),
        ("prefill chunk, 32 rows x 64 tokens", (32, 64, 2), qwen.torch_chunk_gated_delta_rule, ours.chunk_gated_delta_rule),
        ("prefill, 5 rows x 421 tokens", (5, 421, 2), qwen.torch_chunk_gated_delta_rule, ours.chunk_gated_delta_rule),
    ):  # fmt: skip
        inputs = rule_inputs(batch, length, heads)
        yield label, (lambda i=inputs, f=reference: call_rule(f, i)), (lambda i=inputs, f=mine: call_rule(f, i))
    # A first chunk's input: the layer's (rows, tokens, channels) projection seen channels-first.
    # (A later chunk's, contiguous, goes to conv1d in both.)
    weight, frames = torch.randn(768, 4), torch.randn(32, 68, 768).transpose(1, 2)
    yield (
        "conv, first chunk 32 rows x 68 tokens",
        lambda: qwen.causal_conv1d_fn(frames, weight, None, activation="silu"),
        lambda: ours.causal_conv1d_fn(frames, weight, None, activation="silu"),
    )


CHUNK_SHAPES = ((1, 20, 2), (4, 20, 2), (16, 20, 2), (4, 45, 2), (8, 200, 2), (4, 20, 16), (1, 256, 16),
                (4, 256, 16), (1, 1024, 16))  # fmt: skip


def chunk_lengths(rounds: int) -> None:
    """Our prefill rule in the reference's 64-token chunks against `chunk_length`'s choice."""
    from deployments.engines import linear_attention as ours

    chosen = ours.chunk_length
    print("prefill rule, rows x tokens x heads: ms per call in 64-token chunks / chosen length (per round)")
    for batch, length, heads in CHUNK_SHAPES:
        inputs = rule_inputs(batch, length, heads)

        def call(inputs=inputs):
            return call_rule(ours.chunk_gated_delta_rule, inputs)

        repeats = max(3, 4000 // (batch * length * heads))
        pairs = []
        for _ in range(rounds):
            ours.chunk_length = lambda length, requested: requested
            try:
                fixed = per_call_ms(call, repeats)
            finally:
                ours.chunk_length = chosen
            pairs.append((fixed, per_call_ms(call, repeats)))
        figures = ", ".join(f"{f:.2f} / {c:.2f}" for f, c in pairs)
        label = f"{batch} x {length} x {heads} (chunk {chosen(length, 64)})"
        print(f"  {label:<28} {figures}  ({statistics.median(f / c for f, c in pairs):.2f}x)", flush=True)


def engine_rate(model, cache: Path, texts: list[str], inflight: int, max_tokens: int, lean: bool) -> float:
    """Rows/s of the engine alone with our functions (`lean`) or transformers' reference."""
    from engine_denormals import one_run
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    from deployments.engines import linear_attention

    saved = {name: getattr(qwen, name) for name in linear_attention.REPLACEMENTS}
    install = linear_attention.install
    if not lean:
        linear_attention.install = lambda *args: []  # the engine's call keeps the reference
    try:
        elapsed = asyncio.run(one_run(model, cache, texts, inflight, True, {}, max_tokens=max_tokens))
    finally:
        linear_attention.install = install
        for name, function in saved.items():
            setattr(qwen, name, function)
    return len(texts) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunks", action="store_true", help="only the prefill rule's chunk lengths")
    args = parser.parse_args()

    import torch
    from engine_denormals import batch_load

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as the engine's decode thread runs
    if args.chunks:
        chunk_lengths(args.rounds)
        return 0
    print("function alone, ms per call (reference / ours, per round):")
    for label, reference, mine in function_cases():
        pairs = [(per_call_ms(reference, 10), per_call_ms(mine, 10)) for _ in range(args.rounds)]
        figures = ", ".join(f"{r:.2f} / {m:.2f}" for r, m in pairs)
        print(f"  {label:<42} {figures}  ({statistics.median(r / m for r, m in pairs):.1f}x)", flush=True)

    scratch, model, cache, texts = batch_load("bench-linear-attention-", args.rows)
    print(f"engine alone, {args.rows} rows, {args.inflight} in flight, {args.max_tokens} tokens (rows/s):")
    ratios = []
    for round_ in range(args.rounds):
        reference = engine_rate(model, cache, texts, args.inflight, args.max_tokens, lean=False)
        ours = engine_rate(model, cache, texts, args.inflight, args.max_tokens, lean=True)
        ratios.append(ours / reference)
        print(
            f"  round {round_ + 1}: reference {reference:.1f}, ours {ours:.1f} ({ours / reference:.2f}x)",
            flush=True,
        )
    print(f"ours / reference, median {statistics.median(ratios):.2f}x; scratch {scratch} (delete when done)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
