"""`prefill_defer_steps` on and off, paired on one warm engine (prints numbers; not a test).

The transformers engine runs a prefill forward pass for the requests that arrived since the last
step, next to the decode step's. `engine.prefill_defer_steps` lets arrivals wait a few decode steps
while the batch is at least half full, so they are prefilled together. This bench starts the demo
profile's 0.8b engine once, keeps `--concurrency` closed-loop streamed chat clients running, and flips
the setting between 0 and `--steps` every `--period` seconds (order alternating per pair), so each
pair of periods sees the same machine load. It prints both rates, the per-pair ratios and their
median, and time to first token for each setting.

Usage: QWEN_CLUSTER_CACHE=/tmp/cache .venv/bin/python bench/prefill_defer.py
           [--concurrency 32] [--max-tokens 8] [--steps 2] [--period 4] [--pairs 8]
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
sys.path.insert(0, str(ROOT / "bench"))

from compare_servers import percentile  # noqa: E402
from pairing import pair_ratios, period_order, ratio_summary  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    from cluster.config import default_cache_dir, load_config
    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
    from deployments.engines.demo_models import ensure_demo_models
    from deployments.engines.factory import create_engine

    config = load_config(profile="demo")
    model = next(m for m in config.models if m.size == "0.8b")
    cache = default_cache_dir()
    ensure_demo_models(cache, [model.size])
    engine = create_engine(model, cache)
    await engine.start()
    loop = engine._loop_runner  # the setting is read at every admission, so it can flip live
    settings = (0, args.steps)
    answered = dict.fromkeys(settings, 0)
    ttfts: dict[int, list[float]] = {s: [] for s in settings}
    current = [0]
    stopping = asyncio.Event()

    async def client(index: int) -> None:
        count = 0
        while not stopping.is_set():
            count += 1
            request = GenerationRequest(
                request_id=f"c{index}-{count}",
                sampling=SamplingParams(max_tokens=args.max_tokens, temperature=0.7),
                messages=[ChatMessage(role="user", content="Give me a short greeting.")],
                stream=True,
            )
            setting, sent, first = current[0], time.perf_counter(), True
            async for _ in engine.chat(request):
                if first:
                    ttfts[setting].append(time.perf_counter() - sent)
                    first = False
            if current[0] == setting:  # a request that straddles a flip counts for neither
                answered[setting] += 1

    clients = [asyncio.create_task(client(i)) for i in range(args.concurrency)]
    await asyncio.sleep(2.0)  # warm-up
    rates: dict[int, list[float]] = {s: [] for s in settings}
    try:
        for pair in range(args.pairs):
            for setting in period_order(pair, settings):
                loop.prefill_defer_steps = current[0] = setting
                await asyncio.sleep(0.5)  # let the other setting's requests drain
                before, started = answered[setting], time.perf_counter()
                await asyncio.sleep(args.period)
                rates[setting].append((answered[setting] - before) / (time.perf_counter() - started))
    finally:
        stopping.set()
        await asyncio.gather(*clients)
        await engine.shutdown()
    off, on = settings
    ratios = pair_ratios(rates[off], rates[on])
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, c{args.concurrency}, "
        f"max_tokens {args.max_tokens}, {args.pairs} pairs of {args.period:.0f} s"
    )
    for setting in settings:
        print(
            f"  prefill_defer_steps {setting}: {statistics.median(rates[setting]):6.1f} req/s (median), "
            f"TTFT p50 {percentile(ttfts[setting], 0.5) * 1e3:.0f} ms, "
            f"p99 {percentile(ttfts[setting], 0.99) * 1e3:.0f} ms"
        )
    print(f"  ratio {on}/{off} {ratio_summary(ratios)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="the setting compared with 0")
    parser.add_argument("--period", type=float, default=4.0, help="seconds per setting per pair")
    parser.add_argument("--pairs", type=int, default=8)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
