"""User-facing cost of shadow answers: the demo profile at c32 with shadow at 1% vs off, same run.

    python bench/shadow_load.py [--seconds 20] [--rounds 3] [--cache DIR] [--max-host-cpu SHARE|none]

Starts a local Ray + Serve with the demo profile (random weights; shadow output in a temporary
folder), then alternates phases of `--seconds` closed-loop traffic at concurrency 32 (`auto`,
non-streamed, max_tokens 8, distinct prompts) with shadow answers off and at sample_rate 0.01,
`--rounds` times; the switch is the ingress's `reconfigure`, called through a handle on its one
replica (what a user_config change runs), so both settings see the same replicas. Prints p50, p99 and
requests/s of each setting over all its phases, and their ratio. Then overload runs (concurrency
256), interleaved, with shadow off and with shadow at sample_rate 1.0, counting user 429s in each,
then a quiet phase (one request every 2 s for four phase lengths, all drawn) that shows shadows
still run where the host has headroom, and finally the label records written against the records
the ingress counted (`ray_qwen_shadow_total{outcome="recorded"}`). `--max-host-cpu` sets
`router.shadow.max_host_cpu` (default: the demo profile's, 0.8; `none` turns the host-CPU rule
off). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.local_haproxy import free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


async def closed_loop(url: str, concurrency: int, seconds: float, tag: str) -> tuple[list[float], Counter]:
    """`concurrency` clients, each sending its next request when the last one ended."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def client(k: int) -> None:
            i = 0
            while time.monotonic() < stop:
                body = {
                    "model": "auto",
                    "messages": [{"role": "user", "content": f"Say hello to {tag} {k}-{i}."}],
                    "max_tokens": 8,
                    "temperature": 0.7,
                }
                started = time.perf_counter()
                response = await http.post(url, json=body)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(client(k) for k in range(concurrency)))
    return latencies, statuses


QUIET_INTERVAL_S = 2.0


async def paced(url: str, interval_s: float, seconds: float, tag: str) -> int:
    """One request every `interval_s` (each waits for the last), for `seconds`; how many succeeded."""
    done = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120) as http:
        i = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": f"Say hello to {tag} {i}."}],
                "max_tokens": 8,
            }
            done += (await http.post(url, json=body)).status_code == 200
            i += 1
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return done


def shadow_metric(metrics_url: str, outcome: str) -> float:
    """`ray_qwen_shadow_total{outcome=...}` summed over sizes, read from the metrics agent."""
    try:
        text = urllib.request.urlopen(metrics_url, timeout=60).read().decode()
    except OSError as error:  # a busy machine: report it rather than lose the run's figures
        print(f"could not read {metrics_url}: {error!r}", flush=True)
        return float("nan")
    pattern = re.compile(
        r'^ray_qwen_shadow_total\{[^}]*outcome="' + outcome + r'"[^}]*\}\s+([0-9.e+]+)', re.M
    )
    return sum(float(v) for v in pattern.findall(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--max-host-cpu", default=None, help="router.shadow.max_host_cpu, or none")
    parser.add_argument("--on-rate", type=float, default=0.01, help="sample_rate of the 'on' phases")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from ray import serve

    from cluster import local
    from cluster.config import load_config
    from deployments.app import build_app_from_config

    output = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    config = load_config(profile="demo")
    if args.cache:
        config.cache_dir = args.cache
    config.serving.port = free_port()
    config.ray.metrics_export_port = free_port(exclude=[config.serving.port])
    max_host_cpu = config.router.shadow.max_host_cpu
    if args.max_host_cpu is not None:
        max_host_cpu = None if args.max_host_cpu == "none" else float(args.max_host_cpu)
    config.router.shadow = type(config.router.shadow)(
        enabled=True,
        sample_rate=0.01,
        output=str(output),
        max_buffer_s=5.0,
        check_interval_s=1.0,
        max_host_cpu=max_host_cpu,
    )
    url = local.endpoint(config) + "/v1/chat/completions"

    def switch(enabled: bool, rate: float) -> None:
        # The ingress's own `reconfigure`, called on its (one) replica through a handle: what a
        # user_config change does, without `serve.run` redeploying (and restarting) every replica.
        handle = serve.get_deployment_handle("openai-ingress", app_name=config.serving.app_name)
        handle.reconfigure.remote({"shadow": {"enabled": enabled, "sample_rate": rate}}).result()

    local.start_ray(config)
    figures: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "concurrency": 32,
        "seconds_per_phase": args.seconds,
        "max_host_cpu": max_host_cpu,
        "on_rate": args.on_rate,
    }
    try:
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=900)
        asyncio.run(closed_loop(url, 32, 5, "warm"))
        phases = {"off": ([], Counter(), 0.0), "on": ([], Counter(), 0.0)}
        for r in range(args.rounds):
            for name, enabled in (
                (("off", False), ("on", True)) if r % 2 == 0 else (("on", True), ("off", False))
            ):
                switch(enabled, args.on_rate)
                latencies, statuses = asyncio.run(closed_loop(url, 32, args.seconds, f"{name}{r}"))
                old_lat, old_st, old_s = phases[name]
                phases[name] = (old_lat + latencies, old_st + statuses, old_s + args.seconds)
                phase = {
                    name: {
                        "p50_s": round(percentile(latencies, 0.5), 4),
                        "rps": round(len(latencies) / args.seconds, 1),
                    }
                }
                figures.setdefault("phases", []).append(phase)
                print(f"phase: {phase}", flush=True)
        for name, (latencies, statuses, seconds) in phases.items():
            figures[name] = {
                "p50_s": round(percentile(latencies, 0.5), 4),
                "p99_s": round(percentile(latencies, 0.99), 4),
                "rps": round(len(latencies) / seconds, 2),
                "statuses": dict(statuses),
            }
        on, off = figures["on"], figures["off"]
        figures["ratio_on_off"] = {k: round(on[k] / off[k], 4) for k in ("p50_s", "p99_s", "rps")}
        overload: dict[str, Counter] = {"off": Counter(), "on_rate_1": Counter()}
        order = (("off", False, 0.0), ("on_rate_1", True, 1.0))
        for r in range(2):  # interleaved, so drift between phases shows as noise, not as an effect
            for name, enabled, rate in order if r == 0 else order[::-1]:
                switch(enabled, rate)
                _, statuses = asyncio.run(closed_loop(url, 256, args.seconds, f"over-{name}{r}"))
                overload[name] += statuses
                figures.setdefault("overload_phases", []).append({name: dict(statuses)})
                print(f"overload phase: {name} {dict(statuses)}", flush=True)
        figures["overload_c256"] = {name: dict(counts) for name, counts in overload.items()}
        # A quiet phase (one request every 2 s, every one drawn): where the host has headroom, shadows
        # still run, and they hold sampling back themselves while they keep the CPUs busy.
        metrics_url = f"http://127.0.0.1:{config.ray.metrics_export_port}/metrics"
        switch(False, 0.0)
        time.sleep(15)  # the metrics agent exports every few seconds
        sampled_before = shadow_metric(metrics_url, "sampled")
        switch(True, 1.0)
        quiet = asyncio.run(paced(url, QUIET_INTERVAL_S, args.seconds * 4, "quiet"))
        figures["quiet"] = {"requests": quiet, "interval_s": QUIET_INTERVAL_S, "sample_rate": 1.0}
        switch(False, 0.0)
        # Shadow answers still running finish (or time out), then the writer's max_buffer_s passes.
        # Counters reach the metrics agent some seconds late: stop once two readings agree.
        deadline, rows, sampled, last = time.monotonic() + 120, -1, 0.0, None
        while time.monotonic() < deadline:
            time.sleep(5)
            sampled = shadow_metric(metrics_url, "sampled")
            rows = sum(pq.read_metadata(p).num_rows for p in output.rglob("*.parquet"))
            if rows >= sampled > 0 and last == (sampled, rows):
                break
            last = (sampled, rows)
        figures["requests_sampled"] = sampled
        figures["quiet"]["sampled"] = sampled - sampled_before
        figures["requests_skipped_busy"] = shadow_metric(metrics_url, "skipped_busy")
        figures["requests_skipped_host_cpu"] = shadow_metric(metrics_url, "skipped_host_cpu")
        figures["records_counted_by_ingress"] = shadow_metric(metrics_url, "recorded")
        figures["label_rows_written"] = rows
        figures["shadow_dropped_busy"] = shadow_metric(metrics_url, "dropped_busy")
        figures["shadow_answered"] = shadow_metric(metrics_url, "answered")
    finally:
        local.shutdown()
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
