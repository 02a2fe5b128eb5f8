"""vLLM's CPU worker pinned to one core (vLLM's `auto` binding) or left to the OS, paired on one warm
server (prints numbers; not a test).

vLLM's CPU build binds its worker's OpenMP threads to the cores of a NUMA node but one
(`VLLM_CPU_OMP_THREADS_BIND=auto`). Under Ray the worker runs at nice 15, so while a nice-0
process (raylet, GCS, the Serve controller, the load generator) runs on its core it waits, though the
other core may be free. `VLLMEngine` therefore leaves placement to the OS (`nobind`). This bench starts
this API on the vLLM engine once with `auto` (the operator's override), finds the worker process,
and keeps a closed loop of `--concurrency` clients running while it switches the worker's threads
between their pinned cores and every core this machine allows, every `--period` seconds (order
alternating per pair), so both settings see the same server, load and machine. Thread count is the
same in both. With `--replicas 2` each replica's worker is pinned by its own engine, unaware of the
other's. Prints each setting's rate and the per-pair ratios' median.

Usage: QWEN_CLUSTER_CACHE=/tmp/cache .venv/bin/python bench/vllm_cpu_pinning.py
           [--concurrency 1,8,32] [--period 6] [--pairs 6] [--replicas 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_servers import (  # noqa: E402
    LevelResult,
    demo_settings,
    one_request,
    project_vllm_server,
    wait_ready,
)
from pairing import pair_ratios, period_order, ratio_summary  # noqa: E402


def workers() -> list[psutil.Process]:
    """The vLLM worker processes running on this machine (one per replica)."""
    found = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("VLLM::Worker")]
    if not found:
        raise RuntimeError("no VLLM::Worker process found")
    return found


def place(pinned: dict[int, set[int]], unpinned: bool) -> None:
    """Every worker thread on its own pinned cores, or on every core."""
    every = set(range(psutil.cpu_count()))
    for tid, cores in pinned.items():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, every if unpinned else cores)


async def paired(server, concurrency: int, period: float, pairs: int, pinned: dict[int, set[int]]) -> None:
    settings = {"pinned": False, "unpinned": True}
    counts = dict.fromkeys(settings, 0)
    current = ["pinned"]
    stopping = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def client() -> None:
            while not stopping.is_set():
                setting = current[0]
                result = LevelResult()
                await one_request(session, server, 8, False, result, True)
                if current[0] == setting and result.ok:
                    counts[setting] += 1

        clients = [asyncio.create_task(client()) for _ in range(concurrency)]
        await asyncio.sleep(2.0)
        rates: dict[str, list[float]] = {name: [] for name in settings}
        try:
            for pair in range(pairs):
                for name in period_order(pair, list(settings)):
                    place(pinned, settings[name])
                    current[0] = name
                    await asyncio.sleep(0.5)
                    before, started = counts[name], time.perf_counter()
                    await asyncio.sleep(period)
                    rates[name].append((counts[name] - before) / (time.perf_counter() - started))
        finally:
            stopping.set()
            await asyncio.gather(*clients, return_exceptions=True)
            place(pinned, False)
    ratios = pair_ratios(rates["pinned"], rates["unpinned"])
    print(
        f"c{concurrency}: pinned {' / '.join(f'{r:.1f}' for r in rates['pinned'])} req/s, "
        f"unpinned {' / '.join(f'{r:.1f}' for r in rates['unpinned'])} req/s; "
        f"unpinned / pinned {ratio_summary(ratios)}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--period", type=float, default=6.0)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--replicas", type=int, default=1, help="replicas of the size (each its own worker)")
    args = parser.parse_args()
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    cache = default_cache_dir()
    checkpoint = ensure_demo_models(cache, sizes=["0.8b"])["0.8b"]
    settings = demo_settings(checkpoint)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "auto"  # vLLM's default, as an operator would set it
    with tempfile.TemporaryDirectory(prefix="vllm-pinning-") as scratch:
        server = project_vllm_server(cache, Path(scratch), settings, replicas=args.replicas)
        try:
            if server.error:
                print(f"could not start: {server.error}")
                return 1
            asyncio.run(wait_ready(server, 600))
            if server.error:
                print(f"could not start: {server.error}\n{server.log_tail()}")
                return 1
            found = workers()
            pinned = {t.id: set(os.sched_getaffinity(t.id)) for w in found for t in w.threads()}
            print(
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {psutil.cpu_count()} cores; "
                + "; ".join(
                    f"worker {w.pid} ({w.num_threads()} threads, nice {w.nice()}) pinned to cores "
                    f"{sorted(os.sched_getaffinity(w.pid))}"
                    for w in found
                ),
                flush=True,
            )
            for level in (int(c) for c in args.concurrency.split(",")):
                asyncio.run(paired(server, level, args.period, args.pairs, pinned))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
