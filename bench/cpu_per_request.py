"""Where each request's CPU goes: CPU-ms per request and per output token, per process of the cluster.

    python bench/cpu_per_request.py [--refs REF,...] [--variant NAME:KEY=VALUE,...]... [--rounds 2]
                                    [--seconds 15] [--concurrency 32] [--max-tokens 8,128] [--stream]
                                    [--peers vllm,project-vllm] [--idle S]

Starts `qwen-cluster up` of the working tree (and of each git ref in `--refs`, exported from git and
run with this venv's packages) on the demo profile cut to the 0.8b size with the router off (the same
cut as bench/compare_servers.py), all side by side on free loopback ports. Each `--variant` adds a
working-tree cluster whose config differs by dotted keys (`serving.ingress.max_queue_wait_s=1`;
`models.*` keys apply to every model, e.g. `models.deployment.max_ongoing_requests=128`; `env.*`
keys set an environment variable of the cluster's processes instead, e.g.
`env.RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5`). Then, round after round, for each max_tokens and each
cluster in turn (alternating, so the machine's other load falls on all of them alike), it runs a
closed loop of `--concurrency` keep-alive clients for `--seconds` and reads the user+system CPU time
of every process of that cluster before and after (psutil). Processes are grouped by role: HAProxy,
the ingress replica, the model replica, Serve's HAProxyManager and fallback proxy, Serve's
controller, Ray's own (raylet, GCS, agents, idle workers) and the `up` driver; the load generator's
own CPU is shown apart. Prints, per cluster, CPU-ms per request and per output token for each group,
requests/s and output tokens/s, and the ratio of each cluster's total to the first's. `--stream`
adds a streamed run of each max_tokens (usage from the last chunk). `--idle S` also measures, at the
start of every round, each cluster's CPU over S seconds with no requests (percent of one core per
group). Loopback traffic only; every loop is bounded in time.

`--peers` adds servers of bench/compare_servers.py, on the same demo checkpoint in bf16 with that
script's vLLM settings: `vllm` (`vllm serve`: its API process counts as `api server`, its engine core
and worker as `vllm engine core` and `vllm worker`) and `project-vllm` (this API on the vLLM engine,
whose engine core and worker count the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_servers import (  # noqa: E402
    DEMO_CUT_SCRIPT,
    REPO,
    Server,
    demo_settings,
    free_port,
    launch,
    project_at_ref,
    project_server,
    start_server,
    wait_ready,
)
from serve_load import RawHTTPConnection, encode_post  # noqa: E402

GROUPS = (
    "haproxy",
    "ingress",
    "model",
    "serve proxy",
    "controller",
    "ray core",
    "driver",
    "api server",
    "vllm engine core",
    "vllm worker",
)


def apply_override(data: dict, key: str, value: str) -> None:
    """Set a dotted `key` of a config mapping to `value` (YAML-typed); `models.` keys go to every model."""
    import yaml

    parsed = yaml.safe_load(value)
    parts = key.split(".")
    targets = data["models"] if parts[0] == "models" else [data]
    if parts[0] == "models":
        parts = parts[1:]
    for target in targets:
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = parsed


def variant_up(spec: str, cache: Path, scratch: Path) -> Server:
    """A working-tree cluster whose cut demo config has `spec`'s overrides (`NAME:KEY=VALUE,...`); a
    key `env.NAME` sets that environment variable of the cluster's processes instead."""
    import subprocess

    import yaml

    name, _, assignments = spec.partition(":")
    port = free_port()
    config_path = scratch / f"variant-{name}.yaml"
    env = {**os.environ, "QWEN_CLUSTER_CACHE": str(cache), "RAY_raylet_start_wait_time_s": "180"}
    subprocess.run(
        [sys.executable, "-c", DEMO_CUT_SCRIPT, str(config_path), str(cache), str(port)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    data = yaml.safe_load(config_path.read_text())
    for assignment in filter(None, assignments.split(",")):
        key, _, value = (part.strip() for part in assignment.partition("="))
        if key.startswith("env."):
            env[key.removeprefix("env.")] = value
        else:
            apply_override(data, key, value)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    command = [sys.executable, "-m", "cluster.cli", "up", "--config", str(config_path), "--host", "127.0.0.1"]
    server = launch(f"project[{name}]", command, env, scratch)
    server.base_url, server.model = f"http://127.0.0.1:{port}", "qwen3.5-0.8b"
    return server


def peer_server(name: str, checkpoint: Path, cache: Path, scratch: Path) -> Server:
    """A server of bench/compare_servers.py on the demo 0.8b `checkpoint` (bf16, vLLM in eager mode)."""
    if name not in ("vllm", "project-vllm"):
        raise SystemExit(f"unknown peer {name!r}: choose vllm or project-vllm")
    return start_server(name, cache, scratch, demo_settings(checkpoint), "HEAD")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def role(proc: psutil.Process, driver_pid: int) -> str:
    """The group a process of the cluster belongs to, from its process title. A one-size cluster
    serves from one deployment named as the ingress (`serving.ingress.colocate_single_size`): its
    replica, engine included, counts as `ingress`, and `model` stays empty."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return "ray core"
    if proc.pid == driver_pid:
        return "api server" if any(part.endswith("vllm_cli.py") for part in cmdline) else "driver"
    title = cmdline[0] if cmdline else ""
    if title.startswith("VLLM::EngineCore"):
        return "vllm engine core"
    if title.startswith("VLLM::Worker"):
        return "vllm worker"
    if os.path.basename(title) == "haproxy":
        return "haproxy"
    if title.startswith("ray::ServeReplica:") and ":openai-ingress" in title:
        return "ingress"
    if title.startswith("ray::ServeReplica:") and ":model-" in title:
        return "model"
    if title.startswith(("ray::HAProxyManager", "ray::ProxyActor")):
        return "serve proxy"
    if title.startswith("ray::ServeController"):
        return "controller"
    return "ray core"


def cpu_snapshot(driver_pid: int) -> dict[tuple[int, float], tuple[str, float]]:
    """(pid, start time) -> (group, user+system CPU seconds) for the driver and all its descendants."""
    snapshot = {}
    try:
        driver = psutil.Process(driver_pid)
        processes = [driver, *driver.children(recursive=True)]
    except psutil.NoSuchProcess:
        return snapshot
    for proc in processes:
        try:
            times = proc.cpu_times()
            snapshot[(proc.pid, proc.create_time())] = (role(proc, driver_pid), times.user + times.system)
        except psutil.Error:
            continue
    return snapshot


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds each group spent between two snapshots (a process born in between counts whole)."""
    spent: dict[str, float] = defaultdict(float)
    for key, (group, seconds) in after.items():
        spent[group] += seconds - before.get(key, (group, 0.0))[1]
    return spent


@dataclass
class Load:
    """What one load run answered."""

    seconds: float = 0.0
    ok: int = 0
    tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ttfts: list[float] = field(default_factory=list)  # streamed: seconds to the first content chunk
    gaps: list[float] = field(default_factory=list)  # streamed: seconds between content chunks


USAGE_TOKENS = re.compile(rb'"completion_tokens":\s*(\d+)')


async def closed_loop(
    url: str, model: str, concurrency: int, seconds: float, max_tokens: int, stream: bool = False
) -> Load:
    parts = urlsplit(url)
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": "Give me a short greeting."}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    if stream:
        payload.update(stream=True, stream_options={"include_usage": True})
    raw = encode_post(parts.hostname, parts.port, "/v1/chat/completions", payload)
    load = Load()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        connection = RawHTTPConnection(parts.hostname, parts.port)
        streamed: list[int] = []

        times: list[float] = []

        def on_chunk(data: bytes) -> None:
            found = USAGE_TOKENS.search(data)
            if found:
                streamed.append(int(found.group(1)))
            if b'"content":"' in data and b'"content":""' not in data:
                times.append(time.perf_counter())

        try:
            while time.perf_counter() < deadline:
                streamed.clear()
                times.clear()
                sent = time.perf_counter()
                try:
                    status, headers = await asyncio.wait_for(
                        connection.request(raw, on_chunk if stream else None), 60
                    )
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
                    load.errors[type(error).__name__] = load.errors.get(type(error).__name__, 0) + 1
                    connection.close()
                    await asyncio.sleep(0.1)
                    continue
                if status != 200:
                    load.errors[str(status)] = load.errors.get(str(status), 0) + 1
                    await asyncio.sleep(float(headers.get("retry-after", 0.1) or 0.1))
                    continue
                load.ok += 1
                if stream:
                    load.tokens += streamed[-1] if streamed else 0
                    if times:
                        load.ttfts.append(times[0] - sent)
                        load.gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
                else:
                    load.tokens += int(json.loads(connection.body)["usage"]["completion_tokens"])
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    load.seconds = time.perf_counter() - started
    return load


def measure(server: Server, concurrency: int, seconds: float, max_tokens: int, stream: bool = False) -> dict:
    """One load run on `server` with the CPU every group of its processes spent during it."""
    me = psutil.Process()
    client_before = me.cpu_times()
    before = cpu_snapshot(server.process.pid)
    load = asyncio.run(closed_loop(server.base_url, server.model, concurrency, seconds, max_tokens, stream))
    after = cpu_snapshot(server.process.pid)
    client_after = me.cpu_times()
    spent = cpu_delta(before, after)
    spent["client"] = (client_after.user + client_after.system) - (client_before.user + client_before.system)
    return {"load": load, "cpu_s": dict(spent)}


def measure_idle(server: Server, seconds: float) -> dict[str, float]:
    """Percent of one core each group of `server`'s processes used over `seconds` with no requests."""
    before = cpu_snapshot(server.process.pid)
    time.sleep(seconds)
    spent = cpu_delta(before, cpu_snapshot(server.process.pid))
    return {group: 100 * spent.get(group, 0.0) / seconds for group in GROUPS}


def report_idle(idle: dict[str, list[dict[str, float]]], names: list[str], seconds: float) -> None:
    """The idle table: percent of one core per group, per round."""
    print(f"\n== idle, {seconds:.0f} s per round: percent of one core ==")
    print(f"{'group':<14}" + "".join(f"{name:>26}" for name in names))
    for group in (*GROUPS, "total"):
        cells = []
        for name in names:
            values = [sum(run.values()) if group == "total" else run[group] for run in idle[name]]
            cells.append(f"{'/'.join(f'{v:.1f}' for v in values):>26}")
        print(f"{group:<14}" + "".join(cells))


def report(results: dict[str, dict[str, list[dict]]], names: list[str], concurrency: int) -> None:
    baseline = names[0]
    for max_tokens in results[baseline]:  # the workload labels, in the order they ran
        print(f"\n== c{concurrency}, {max_tokens}: CPU-ms per request (per output token) ==")
        header = f"{'group':<14}" + "".join(f"{name:>26}" for name in names)
        print(header)
        totals = {}
        for group in (*GROUPS, "total", "client"):
            cells = []
            for name in names:
                runs = results[name][max_tokens]
                per_request, per_token = [], []
                for run in runs:
                    load = run["load"]
                    if not load.ok:
                        continue
                    cpu = run["cpu_s"]
                    seconds = (
                        sum(cpu.get(g, 0.0) for g in GROUPS) if group == "total" else cpu.get(group, 0.0)
                    )
                    per_request.append(1000 * seconds / load.ok)
                    per_token.append(1000 * seconds / max(load.tokens, 1))
                if not per_request:
                    cells.append(f"{'failed':>26}")
                    continue
                if group == "total":
                    totals[name] = statistics.mean(per_request)
                rounds = "/".join(f"{v:.1f}" for v in per_request)
                cells.append(f"{rounds + f' ({statistics.mean(per_token):.2f})':>26}")
            print(f"{group:<14}" + "".join(cells))
        rates = []
        for name in names:
            runs = [run["load"] for run in results[name][max_tokens] if run["load"].ok]
            req = "/".join(f"{load.ok / load.seconds:.0f}" for load in runs)
            tok = "/".join(f"{load.tokens / load.seconds:.0f}" for load in runs)
            errors = sum(sum(load.errors.values()) for load in (r["load"] for r in results[name][max_tokens]))
            rates.append(f"{req} req/s, {tok} tok/s" + (f", {errors} errors" if errors else ""))
        print(f"{'rate':<14}" + "".join(f"  {r:>24}" for r in rates))
        if any(run["load"].ttfts for name in names for run in results[name][max_tokens]):
            cells = []
            for name in names:
                loads = [run["load"] for run in results[name][max_tokens]]
                ttft = "/".join(
                    f"{1000 * percentile(one.ttfts, 0.5):.0f}-{1000 * percentile(one.ttfts, 0.99):.0f}"
                    for one in loads
                )
                gap = "/".join(f"{1000 * percentile(one.gaps, 0.5):.0f}" for one in loads)
                cells.append(f"{ttft} ms, gap {gap}")
            print(f"{'TTFT p50-p99':<14}" + "".join(f"  {c:>24}" for c in cells))
        if baseline in totals:
            ratios = [f"{totals[n] / totals[baseline]:.2f}x" if n in totals else "-" for n in names]
            print(f"{'total ratio':<14}" + "".join(f"{r:>26}" for r in ratios))
    print(
        "\nvalues per round (a/b/...), mean per output token in brackets; total = every group of the"
        " cluster, the client apart"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", default="", help="git refs to run beside the working tree, comma-separated")
    parser.add_argument("--no-worktree", action="store_true", help="only the refs, not the working tree")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE,... a working-tree cluster with overrides",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per load run")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--max-tokens", default="8,128", help="max_tokens values, comma-separated")
    parser.add_argument("--stream", action="store_true", help="also a streamed run of each max_tokens")
    parser.add_argument(
        "--ready-timeout", type=float, default=300, help="seconds a cluster may take to start"
    )
    parser.add_argument(
        "--peers", default="", help="servers of bench/compare_servers.py to run beside: vllm, project-vllm"
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0,
        help="also measure each cluster's CPU with no requests, seconds per round",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    cache = default_cache_dir()
    checkpoint = ensure_demo_models(cache, sizes=["0.8b"])["0.8b"]
    workloads = [(int(v), False) for v in args.max_tokens.split(",")]
    if args.stream:
        workloads += [(max_tokens, True) for max_tokens, _ in workloads]
    refs = [r.strip() for r in args.refs.split(",") if r.strip()]
    with tempfile.TemporaryDirectory(prefix="cpu-per-request-") as scratch_name:
        scratch = Path(scratch_name)
        servers: list[Server] = []
        try:
            if not args.no_worktree:
                servers.append(project_server(cache, scratch))
            for ref in refs:
                servers.append(project_at_ref(ref, scratch))
            for spec in args.variant:
                servers.append(variant_up(spec, cache, scratch))
            for peer in filter(None, (p.strip() for p in args.peers.split(","))):
                servers.append(peer_server(peer, checkpoint, cache, scratch))
            for server in servers:
                if server.error is None:
                    asyncio.run(wait_ready(server, args.ready_timeout))
                if server.error:
                    print(f"{server.name} could not start: {server.error}", file=sys.stderr)
                    return 1
                print(f"{server.name} ready at {server.base_url}", flush=True)
            for server in servers:  # warm each: first requests pay one-off costs
                measure(server, args.concurrency, 3, 8)
            results: dict[str, dict[str, list[dict]]] = {s.name: defaultdict(list) for s in servers}
            idle: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for round_index in range(args.rounds):
                if args.idle:
                    time.sleep(5)  # the last load run's tail (queued work, metrics) settles first
                    for server in servers:
                        idle[server.name].append(measure_idle(server, args.idle))
                        print(
                            f"round {round_index + 1} {server.name} idle: {sum(idle[server.name][-1].values()):.1f}%",
                            flush=True,
                        )
                for max_tokens, stream in workloads:
                    label = f"max_tokens {max_tokens}" + (" streamed" if stream else "")
                    for server in servers:
                        run = measure(server, args.concurrency, args.seconds, max_tokens, stream)
                        results[server.name][label].append(run)
                        load = run["load"]
                        total = sum(run["cpu_s"].get(g, 0.0) for g in GROUPS)
                        print(
                            f"round {round_index + 1} {server.name} {label}: {load.ok} ok in "
                            f"{load.seconds:.1f} s, {1000 * total / max(load.ok, 1):.1f} CPU-ms/request"
                            + (f", errors {load.errors}" if load.errors else ""),
                            flush=True,
                        )
        finally:
            for server in servers:
                server.stop()
    names = [s.name for s in servers]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {psutil.cpu_count()} cores")
    if args.idle:
        report_idle(idle, names, args.idle)
    report(results, names, args.concurrency)
    if args.json:
        plain = {
            name: {
                mt: [{"load": vars(run["load"]), "cpu_s": run["cpu_s"]} for run in runs]
                for mt, runs in per.items()
            }
            for name, per in results.items()
        }
        if args.idle:  # percent of one core per group, a list of rounds per cluster
            plain = {"runs": plain, "idle": idle}
        args.json.write_text(json.dumps(plain, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
