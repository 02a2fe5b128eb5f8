"""Soak: measure capacity, then hold 80% of it for a while; errors and memory growth per process.

    python bench/soak.py [--url http://127.0.0.1:8000] [--minutes 10] [--fraction 0.8]

Against a running endpoint (`make up`), or, without `--url`, a local demo cluster started here.
Phase 1 finds capacity: closed-loop clients on `--model` for `--probe-seconds`, requests/s.
Phase 2 sends open-loop requests at `fraction` of that rate for `--minutes` (a fixed arrival
schedule, so a slow server meets the same demand) and samples the RSS of every Ray process of this
machine (raylet, GCS, workers, replicas) at the start of phase 2, then each minute. Prints the error
count by status, latency p50/p99, and each process's RSS growth, largest first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # serve_load's raw HTTP client


def ray_processes() -> dict[int, tuple[str, int]]:
    """pid -> (name, RSS bytes) of this machine's Ray processes (read from /proc: Linux only)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:  # the process ended while we looked
            continue
        if any(marker in cmdline for marker in ("ray::", "raylet", "gcs_server", "ray/dashboard", "default_worker")):
            rss_kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            found[int(entry.name)] = (cmdline[:60], rss_kib * 1024)
    return found


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def body(model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "a short greeting"}],
        "max_tokens": max_tokens,
    }


class RawSender:
    """Requests over bench/serve_load.py's lean keep-alive HTTP client, from a pool of idle
    connections (a new one when all are busy). On 2 cores httpx spends most of a core at 70 req/s,
    CPU the server under test then lacks; this client spends a fraction of that."""

    def __init__(self, base_url: str, payload: dict):
        from serve_load import encode_post

        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port
        self.raw = encode_post(url.host, url.port, url.path.rstrip("/") + "/chat/completions", payload)
        self.idle: list = []

    async def send(self) -> int | str:
        from serve_load import RawHTTPConnection

        connection = None
        while self.idle and connection is None:  # skip sockets the server already closed, as httpx does
            candidate = self.idle.pop()
            if candidate.reader is not None and not candidate.reader.at_eof():
                connection = candidate
            else:
                candidate.close()
        connection = connection or RawHTTPConnection(self.host, self.port)
        try:
            status, _ = await asyncio.wait_for(connection.request(self.raw), 60)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            connection.close()
            return type(error).__name__
        self.idle.append(connection)
        return status

    async def close(self) -> None:
        for connection in self.idle:
            connection.close()


class HttpxSender:
    """The same requests from httpx (how figures before 2026-12-01 14:30 were measured)."""

    def __init__(self, base_url: str, payload: dict):
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=256))
        self.payload = payload

    async def send(self) -> int | str:
        try:
            return (await self.http.post("/chat/completions", json=self.payload)).status_code
        except httpx.HTTPError as error:
            return type(error).__name__

    async def close(self) -> None:
        await self.http.aclose()


SENDERS = {"raw": RawSender, "httpx": HttpxSender}


async def capacity(sender, seconds: float, concurrency: int) -> float:
    """Requests/s that closed-loop clients get (200s only)."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker():
        nonlocal done
        while time.monotonic() < deadline:
            status = await sender.send()  # not `done += await ...`: that reads `done` before the await
            done += status == 200

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def soak(sender, rate: float, seconds: float) -> dict:
    statuses: Counter = Counter()
    latencies: list[float] = []
    samples = [(0.0, ray_processes())]
    started = time.monotonic()

    async def one():
        sent = time.monotonic()
        status = await sender.send()
        statuses[status] += 1
        if status == 200:
            latencies.append(time.monotonic() - sent)

    tasks = []
    next_sample = started + 60
    for index in range(int(rate * seconds)):
        due = started + index / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(one()))
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - started, await asyncio.to_thread(ray_processes)))
            next_sample += 60
            # A generator that falls behind its schedule, or requests piling up, show here.
            elapsed = time.monotonic() - started
            pending = sum(not task.done() for task in tasks)
            print(
                f"{elapsed:.0f} s: sent {len(tasks)} of {min(int(rate * elapsed), int(rate * seconds))} "
                f"due by now, waiting for {pending}, statuses {dict(statuses)}",
                file=sys.stderr,
                flush=True,
            )
    await asyncio.gather(*tasks)
    samples.append((time.monotonic() - started, ray_processes()))
    first, last = samples[0][1], samples[-1][1]
    growth = sorted(
        (
            (100.0 * (last[pid][1] - rss) / rss, name, rss // 2**20, last[pid][1] // 2**20)
            for pid, (name, rss) in first.items()
            if pid in last and rss > 0
        ),
        reverse=True,
    )
    return {
        "seconds": round(time.monotonic() - started, 1),
        "rate": round(rate, 2),
        "statuses": dict(statuses),
        "errors": sum(count for status, count in statuses.items() if status != 200),
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "rss_growth_top": [
            {"growth_pct": round(g, 1), "process": n, "start_mib": a, "end_mib": b}
            for g, n, a, b in growth[:8]
        ],
        "rss_growth_max_pct": round(growth[0][0], 1) if growth else None,
    }


async def measure(args, base_url: str) -> dict:
    """Phase 1 and phase 2 on one sender; the generator's own CPU seconds are reported with them."""
    import resource

    sender = SENDERS[args.client](base_url, body(args.model, args.max_tokens))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        measured = await capacity(sender, args.probe_seconds, args.probe_concurrency)
        result = {"client": args.client, "capacity_rps": round(measured, 2), "fraction": args.fraction}
        rate = args.rate if args.rate else measured * args.fraction
        result.update(await soak(sender, rate, args.minutes * 60))
    finally:
        await sender.close()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    result["generator_cpu_s"] = round(cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running endpoint; none starts a local demo cluster")
    parser.add_argument("--model", default="qwen3.5-0.8b")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument(
        "--rate", type=float, default=None, help="fixed requests/s instead of fraction x the probe (comparisons)"
    )
    parser.add_argument(
        "--max-queue-wait-s", type=float, default=None, help="serving.ingress.max_queue_wait_s (0: fail-fast)"
    )
    parser.add_argument("--client", choices=sorted(SENDERS), default="raw", help="load generator")
    parser.add_argument("--probe-seconds", type=float, default=20.0)
    parser.add_argument("--probe-concurrency", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qwen-cluster")
    args = parser.parse_args()

    started_here = args.url is None
    if started_here:
        from bench.chaos import demo_config
        from cluster import local
        from deployments.app import build_app_from_config
        from deployments.engines.demo_models import ensure_demo_models

        ensure_demo_models(args.cache)
        config = demo_config(args.cache, limit=32)
        if args.max_queue_wait_s is not None:
            config.serving.ingress.max_queue_wait_s = args.max_queue_wait_s
        local.start_ray(config)
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=600)
        args.url = local.endpoint(config)
    try:
        base_url = args.url.rstrip("/") + "/v1"
        result = asyncio.run(measure(args, base_url))
        # Every admission slot must have come back once the load is over.
        health = httpx.get(args.url.rstrip("/") + "/healthz", timeout=30).json()
        result["left_in_flight"] = {
            name: entry.get("in_flight_here", 0)
            for name, entry in health.get("capacity", {}).items()
        }
    finally:
        if started_here:
            local.shutdown()
    for name, value in result.items():
        print(f"{name} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
