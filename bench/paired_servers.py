"""Two servers side by side, both warm, measured in alternating periods while the other is frozen
(prints numbers; not a test).

bench/compare_servers.py starts one server at a time, measures every workload, stops it and starts
the next: on a shared 2-core machine the load moves between those minutes (`vllm serve`'s own c32
read 97 and 263 req/s in two rounds of one run, 2026-12-07), so a ratio of two servers' rounds carries
that drift. Here both servers start once and stay up; for each workload the bench alternates periods
between them (A B, B A, A B, ...), and while one is measured every process of the other (its launcher
and all that launcher's descendants: Ray's raylet, GCS, workers, HAProxy, vLLM's engine core) is
stopped with SIGSTOP, so it takes no CPU, and resumed with SIGCONT for its turn. Each pair of periods
sees the same machine within seconds; the bench prints both servers' figure per period, the ratio per
pair and the median ratio.

Frozen periods are kept short (one workload's period plus a settle), under the health-check timeouts
of Ray and Serve (30 s), since a frozen cluster's clocks keep running.

Naming one server twice (`--servers project-vllm,project-vllm`) measures the bench's own bias: the
ratios should sit around 1.

Usage: QWEN_CLUSTER_CACHE=/tmp/cache .venv/bin/python bench/paired_servers.py
           [--servers vllm,project-vllm] [--workloads c1,c8,c32] [--period 8] [--pairs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_servers import (  # noqa: E402
    WORKLOADS,
    Server,
    ServeSettings,
    demo_settings,
    measure,
    run_level,
    start_server,
    wait_ready,
)
from pairing import pair_ratios, period_order, ratio_summary  # noqa: E402

SETTLE_S = 1.5


def tree(server: Server) -> list[psutil.Process]:
    """The server's launcher and every process under it."""
    try:
        launcher = psutil.Process(server.process.pid)
        return [launcher, *launcher.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_tree(server: Server, signum: int) -> None:
    """Send `signum` to every process of the server (children first when stopping, so none of them
    sees its parent stopped while it still runs; parents first when resuming)."""
    processes = tree(server)
    for process in reversed(processes) if signum == signal.SIGSTOP else processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


async def period(server: Server, workload: str, seconds: float) -> float:
    """Resume `server`, let it settle, measure `workload` for `seconds`, and return its figure
    (requests/s, or TTFT p50 ms)."""
    signal_tree(server, signal.SIGCONT)
    await asyncio.sleep(SETTLE_S)
    await run_level(server, 2, 0.5, 8)  # reconnect and wake the engine, not counted
    figures = await measure(server, seconds, [workload])
    signal_tree(server, signal.SIGSTOP)
    value = figures[workload]["value"]
    return value[0] if isinstance(value, tuple) else value


def start(name: str, scratch: Path, settings: ServeSettings, ready_timeout: float) -> Server:
    from cluster.config import default_cache_dir

    server = start_server(name, default_cache_dir(), scratch, settings, "HEAD")
    if server.error is None:
        asyncio.run(wait_ready(server, ready_timeout))
    if server.error is not None:
        raise RuntimeError(f"{name} could not start: {server.error}\n{server.log_tail()}")
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="vllm,project-vllm", help="two servers of compare_servers.py")
    parser.add_argument("--workloads", default="c1,c8,c32", help="comma-separated, from compare_servers.py")
    parser.add_argument("--period", type=float, default=8.0, help="seconds per measured period")
    parser.add_argument("--pairs", type=int, default=4, help="pairs of periods per workload")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    args = parser.parse_args()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if len(names) != 2:
        parser.error("--servers names exactly two servers")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    checkpoint = ensure_demo_models(default_cache_dir(), sizes=["0.8b"])["0.8b"]
    settings = demo_settings(checkpoint)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="paired-servers-") as scratch_name:
        try:
            for name in names:
                (Path(scratch_name) / str(len(servers))).mkdir()
                server = start(name, Path(scratch_name) / str(len(servers)), settings, args.ready_timeout)
                if any(other.name == server.name for other in servers):
                    server.name += " (2)"  # the same server twice: an A/A run checks the bench itself
                servers.append(server)
                asyncio.run(run_level(server, 8, 3.0, 8))  # warm-up, not counted
                signal_tree(server, signal.SIGSTOP)
                print(f"{name} ready at {server.base_url}; frozen", flush=True)
            print(
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {psutil.cpu_count()} cores; "
                f"{args.pairs} pairs of {args.period:.0f} s periods per workload",
                flush=True,
            )
            first, second = servers
            for workload in workloads:
                values: dict[str, list[float]] = {first.name: [], second.name: []}
                for pair in range(args.pairs):
                    for server in period_order(pair, (first, second)):
                        values[server.name].append(asyncio.run(period(server, workload, args.period)))
                ratios = pair_ratios(values[first.name], values[second.name])
                unit = "TTFT p50 ms" if workload.startswith(("ttft", "short", "mixed")) else "per s"
                print(
                    f"{workload} ({unit}): {first.name} {' / '.join(f'{v:.1f}' for v in values[first.name])}; "
                    f"{second.name} {' / '.join(f'{v:.1f}' for v in values[second.name])}; "
                    f"{second.name} / {first.name} {ratio_summary(ratios)}",
                    flush=True,
                )
        finally:
            for server in servers:
                signal_tree(server, signal.SIGCONT)
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
