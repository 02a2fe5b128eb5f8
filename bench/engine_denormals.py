"""The transformers engine with and without subnormal floats flushed to zero (prints numbers; not a test).

Qwen3.5's linear-attention (Gated DeltaNet) recurrent states decay towards zero; on x86 a float below
1.2e-38 (subnormal) costs one to two orders of magnitude more per operation. The engine's decode
thread flushes them to zero (`DecodeLoop.run`). This bench runs the engine alone on the batch job's
load (documents of about 70 words, "Summarize in one sentence:", 32 greedy tokens, `--inflight`
requests at once, one torch thread) with the flush turned off and on, alternating, and prints rows/s,
the time spent in prefill chunks that carry a state, and the ratio.

Usage: .venv/bin/python bench/engine_denormals.py [--rows 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ray_data_llm_peer import PROMPT, SIZE, write_rows  # noqa: E402


def chunk_timer(totals: dict):
    """Wrap the chunked Gated DeltaNet rule the engine runs (transformers' reference, or ours once
    the engine has installed it); `totals` sums the seconds and calls of the chunks that carry a
    state. Returns a function that unwraps it."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

    original = qwen.torch_chunk_gated_delta_rule

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        if kwargs.get("initial_state") is not None:
            totals["seconds"] += time.perf_counter() - started
            totals["calls"] += 1
        return result

    qwen.torch_chunk_gated_delta_rule = timed

    def unwrap() -> None:
        qwen.torch_chunk_gated_delta_rule = original

    return unwrap


async def one_run(
    model, cache: Path, texts: list[str], inflight: int, flush: bool, totals: dict, max_tokens: int = 32
) -> float:
    import torch

    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
    from deployments.engines.factory import create_engine

    real_flush = torch.set_flush_denormal
    if not flush:
        torch.set_flush_denormal = lambda on: False  # the engine's call does nothing this run
    engine = create_engine(model, cache)
    unwrap = None
    try:
        await engine.start()
        unwrap = chunk_timer(totals)
        limit = asyncio.Semaphore(inflight)

        async def answer(i: int, text: str) -> None:
            async with limit:
                request = GenerationRequest(
                    request_id=f"row-{i}",
                    sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
                    messages=[ChatMessage(role="user", content=f"{PROMPT}\n\n{text}")],
                    answer_logprobs=False,
                    stream=False,
                )
                async for _ in engine.chat(request):
                    pass

        totals.update(seconds=0.0, calls=0)
        started = time.perf_counter()
        await asyncio.gather(*(answer(i, text) for i, text in enumerate(texts)))
        return time.perf_counter() - started
    finally:
        if unwrap is not None:
            unwrap()
        await engine.shutdown()
        torch.set_flush_denormal = real_flush


def batch_load(prefix: str, rows: int):
    """A scratch folder with the demo 0.8b checkpoint and `rows` of the batch job's documents:
    `(scratch, model config, checkpoint cache, texts)`."""
    import json

    from batch_tree import demo_config

    from deployments.engines.demo_models import ensure_demo_models

    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    config = demo_config({"ray": {}, "sizes": 1, "router": {}, "batch": {}, "cache_dir": str(scratch)})
    ensure_demo_models(config.cache_dir, sizes=[SIZE])
    model = next(m for m in config.models if m.size == SIZE)
    write_rows(scratch / "rows.jsonl", rows)
    texts = [json.loads(line)["text"] for line in (scratch / "rows.jsonl").open()]
    return scratch, model, config.cache_dir, texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    scratch, model, cache, texts = batch_load("bench-denormals-", args.rows)
    totals: dict = {}
    figures: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for flush in (False, True):
            elapsed = asyncio.run(one_run(model, cache, texts, args.inflight, flush, totals))
            rate = len(texts) / elapsed
            figures[flush].append(rate)
            per_call = totals["seconds"] / max(1, totals["calls"]) * 1e3
            print(
                f"round {round_ + 1} flush {'on ' if flush else 'off'}: {elapsed:6.1f} s {rate:6.1f} rows/s; "
                f"prefill chunks with a state: {totals['calls']} x {per_call:.1f} ms",
                flush=True,
            )
    ratios = [on / off for off, on in zip(figures[False], figures[True], strict=True)]
    print(f"flush on / off rows/s per round: {', '.join(f'{r:.2f}x' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}x)")  # fmt: skip
    print(f"scratch {scratch} (delete when done)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
