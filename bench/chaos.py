"""Faults under load on a local demo cluster, with figures: what is lost, how fast it comes back.

    python bench/chaos.py [--scenarios burst,replica,ingress,node] [--load-seconds 5]

Starts local Ray + Serve with the demo profile (0.8b admitting `--limit` requests), then per scenario:
- burst: 128 streamed requests released at once on 0.8b: admitted in flight (peak, from /healthz)
  against the limit, 429 count and their latency p50/p99, from the lean raw-HTTP client (timed from
  each request's write): the first burst after start-up, then `--bursts - 1` more pooled (`warm`),
  then one from httpx (timed from task start, as the figures before 2026-12-01 were); with
  `--warm-burst N`, a burst of N is sent (and not counted) before the first, to measure how much of
  the first burst's excess is the serving stack's first concurrent use, and `--warm-idle-s S` waits
  that long after it (HAProxy closes idle connections to the ingress after a while);
- replica: kill the 0.8b replica under steady load: requests lost (503 / 5xx / hang), seconds until
  /healthz is 200 again, p99 of the survivors before and after;
- ingress: kill one ingress replica under steady load: the same figures (with `--ingress-replicas 2`
  recovery is the second replica RUNNING again, since /healthz stays 200 throughout);
- node: a second local cluster of several raylets (ray.cluster_utils.Cluster), each size pinned to
  its worker group's custom resource as rendered for KubeRay; the node holding 2b is removed under
  load on both sizes: 2b's answers while gone, 0.8b's p99 before and during.
Every figure is printed as one `name value` line, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # serve_load's raw HTTP client

from cluster.local_haproxy import free_port  # noqa: E402
from tests.support.chaos import kill_replicas, replica_actor_names, run_load, wait_for_health  # noqa: E402


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def demo_config(cache: Path, limit: int):
    from cluster.config import load_config

    config = load_config(profile="demo")
    config.cache_dir = cache
    config.serving.port = free_port()
    config.ray.num_cpus = 8
    # Short deadlines, so a size that lost its replica answers 503 well within the clients' 60 s.
    config.serving.ingress.request_timeout_s = 20
    config.serving.ingress.cold_start_timeout_s = 5
    for model in config.models:
        if model.size == "0.8b":
            model.deployment.max_ongoing_requests = limit
            model.deployment.max_queued_requests = limit
    return config


BURST_BODY = {
    "model": "qwen3.5-0.8b",
    "messages": [{"role": "user", "content": "count"}],
    "max_tokens": 16,
    "stream": True,
}


def burst_figures(prefix: str, results: list[tuple[int | str, float]], concurrency: int) -> dict:
    refused = [head for status, head in results if status == 429]
    return {
        f"{prefix}requests": concurrency,
        f"{prefix}admitted": sum(1 for status, _ in results if status == 200),
        f"{prefix}429": len(refused),
        f"{prefix}other": sum(1 for status, _ in results if status not in (200, 429)),
        f"{prefix}429_p50_ms": round(1000 * percentile(refused, 0.5), 1) if refused else None,
        f"{prefix}429_p99_ms": round(1000 * percentile(refused, 0.99), 1) if refused else None,
    }


async def burst(base_url: str, concurrency: int = 128) -> tuple[list[tuple[int | str, float]], float]:
    """`concurrency` streamed requests released together on open keep-alive connections: each
    request's (status, seconds from writing its bytes to reading its response head), and how long
    the generator took to write them all.

    The load generator is the lean raw-HTTP client of bench/serve_load.py, connected before the
    release, so the time measured is the server's.
    """
    from serve_load import RawHTTPConnection, encode_post

    url = httpx.URL(base_url)
    raw = encode_post(url.host, url.port, url.path.rstrip("/") + "/chat/completions", BURST_BODY)
    connections = [RawHTTPConnection(url.host, url.port) for _ in range(concurrency)]
    for connection in connections:
        connection.reader, connection.writer = await asyncio.open_connection(url.host, url.port)
    release = asyncio.Event()
    sent_at: list[float] = []

    async def one(connection: RawHTTPConnection) -> tuple[int | str, float]:
        await release.wait()
        started = time.perf_counter()
        sent_at.append(started)
        try:
            status, _ = await asyncio.wait_for(connection.request(raw), 120)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            return type(error).__name__, time.perf_counter() - started
        finally:
            connection.close()
        return status, connection.head_at - started

    tasks = [asyncio.create_task(one(connection)) for connection in connections]
    release.set()
    results = await asyncio.gather(*tasks)
    return results, max(sent_at) - min(sent_at)


def burst_scenario(base_url: str, bursts: int, warm_burst: int = 0, warm_idle_s: float = 1.5) -> dict:
    """The first burst after start-up (after an uncounted burst of `warm_burst`, if any), then
    `bursts - 1` more (pooled: `burst_warm_`), then one from httpx as earlier figures were measured."""
    if warm_burst:
        asyncio.run(burst(base_url, warm_burst))
        time.sleep(warm_idle_s)
    results, spread = asyncio.run(burst(base_url))
    figures = burst_figures("burst_", results, len(results))
    figures["burst_send_spread_ms"] = round(1000 * spread, 1)
    warm: list[tuple[int | str, float]] = []
    for _ in range(bursts - 1):
        time.sleep(1.5)  # the admitted streams finish
        warm += asyncio.run(burst(base_url))[0]
    if warm:
        figures.update(burst_figures("burst_warm_", warm, len(warm)))
    time.sleep(1.5)
    figures.update(asyncio.run(burst_httpx(base_url)))
    return figures


async def burst_httpx(base_url: str, concurrency: int = 128) -> dict:
    """The same burst from httpx (new connections, timed from task start): how earlier figures were
    measured; on 2 cores httpx's own CPU per request is part of what it reports."""
    async with httpx.AsyncClient(
        base_url=base_url, timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as http:

        async def one():
            started = time.perf_counter()
            async with http.stream("POST", "/chat/completions", json=BURST_BODY) as response:
                status = response.status_code
                head = time.perf_counter() - started
                await response.aread()
            return status, head

        results = await asyncio.gather(*(one() for _ in range(concurrency)))
    return burst_figures("burst_httpx_", results, concurrency)


def wait_for_running(
    app: str, deployment: str, replicas: int, killed: list[str], timeout_s: float = 180.0
) -> float:
    """Block until `deployment` is back to `replicas` RUNNING replicas, none of them one of the
    `killed` actors; returns when (monotonic). With a second replica serving throughout, /healthz
    never goes 503, so this is the recovery. RUNNING counts come from the ingress's own counter;
    requiring a live replacement actor keeps a dead replica the controller has not noticed yet
    from counting."""
    from deployments.openai.capacity import serve_replica_counter

    count = serve_replica_counter(app, {deployment: deployment})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = [name for name, _ in replica_actor_names(app, deployment) if name not in killed]
        if len(live) >= replicas and asyncio.run(count()).get(deployment, 0) >= replicas:
            return time.monotonic()
        time.sleep(0.2)
    return float("nan")


async def fault_under_load(
    base_url: str, fault, load_s: float, label: str, models=("qwen3.5-0.8b",), repair=None, recovered=None
) -> dict:
    """Load, `fault`, then (if given) `repair` after `load_s` of outage; figures per model.
    `recovered` blocks until the service is whole again and returns when; by default that is
    /healthz answering 200 after a non-200."""
    base = base_url.removesuffix("/v1")
    stop = asyncio.Event()
    loads = [
        asyncio.create_task(run_load(base_url, model, workers=3, streamed_workers=1, stop=stop))
        for model in models
    ]
    await asyncio.sleep(load_s)
    fault_at = time.monotonic()
    await asyncio.to_thread(fault)
    repair_at = float("nan")
    if repair is not None:
        await asyncio.sleep(load_s)  # the outage the clients see before the repair
        repair_at = time.monotonic()
        # On this (main) thread: starting a Ray node installs signal handlers, which only the main
        # thread may do. The load pauses meanwhile, which the recovery and "during" figures include
        # (so `outage` below, from the fault to the repair, is the surviving sizes' fair figure).
        repair()
    try:
        if recovered is None:
            health = await asyncio.to_thread(wait_for_health, base, 180.0, True)
            recovered_at = health[-1][0]
        else:
            health, recovered_at = [], await asyncio.to_thread(recovered)
    except TimeoutError:
        health, recovered_at = [], float("nan")
    await asyncio.sleep(load_s)
    stop.set()
    results = await asyncio.gather(*loads)
    figures = {}
    for model, result in zip(models, results, strict=True):
        key = f"{label}_{model.removeprefix('qwen3.5-')}"
        figures.update(
            {
                f"{key}_requests": len(result.finished) + result.hangs,
                f"{key}_lost": result.lost,
                f"{key}_503": len(result.unavailable_retry_after),
                f"{key}_429": result.overloaded,
                f"{key}_5xx_other": len(result.server_errors),
                f"{key}_hangs": result.hangs,
                f"{key}_p99_before_s": result.p99(until=fault_at),
                f"{key}_p99_during_s": result.p99(since=fault_at, until=recovered_at),
                f"{key}_p99_outage_s": result.p99(since=fault_at, until=repair_at),
                f"{key}_p99_after_s": result.p99(since=recovered_at),
            }
        )
        if result.server_errors:
            figures[f"{key}_first_errors"] = result.server_errors[:3]
    figures[f"{label}_recovery_s"] = round(recovered_at - fault_at, 2)
    figures[f"{label}_healthz_503_seen"] = any(status != 200 for _, status in health)
    return figures


def run_single_node(args, scenarios: list[str]) -> dict:
    from cluster import local
    from deployments.app import build_app_from_config
    from deployments.engines.demo_models import ensure_demo_models

    ensure_demo_models(args.cache)
    config = demo_config(args.cache, args.limit)
    config.serving.ingress.num_replicas = args.ingress_replicas
    local.start_ray(config)
    figures: dict = {"limit": args.limit}
    try:
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=600)
        base_url = local.endpoint(config) + "/v1"
        wait_for_health(base_url.removesuffix("/v1"), 180)
        app = config.serving.app_name
        if "burst" in scenarios:
            figures.update(burst_scenario(base_url, args.bursts, args.warm_burst, args.warm_idle_s))
            health = httpx.get(base_url.removesuffix("/v1") + "/healthz", timeout=30).json()
            figures["burst_peak_in_flight"] = health["capacity"]["qwen3.5-0.8b"]["peak_in_flight_here"]
        if "replica" in scenarios:
            fault = lambda: kill_replicas(app, "model-0_8b")  # noqa: E731
            figures.update(asyncio.run(fault_under_load(base_url, fault, args.load_seconds, "replica")))
        if "ingress" in scenarios:
            # One ingress replica killed; with two, the other goes on serving while it is replaced.
            killed: list[str] = []
            fault = lambda: killed.extend(kill_replicas(app, "openai-ingress", count=1))  # noqa: E731
            recovered = None
            if args.ingress_replicas > 1:
                recovered = lambda: wait_for_running(app, "openai-ingress", args.ingress_replicas, killed)  # noqa: E731
            figures["ingress_replicas"] = args.ingress_replicas
            figures.update(
                asyncio.run(
                    fault_under_load(base_url, fault, args.load_seconds, "ingress", recovered=recovered)
                )
            )
    finally:
        local.shutdown()
    return figures


def run_multi_node(args) -> dict:
    """Sizes pinned by their worker groups' resources on separate raylets; the 2b node is removed."""
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from cluster import local
    from cluster.k8s.groups import plan_worker_groups
    from cluster.k8s.serve_config import deployment_overrides
    from cluster.kubernetes_config import WorkerGroupConfig
    from deployments.engines.demo_models import ensure_demo_models
    from deployments.model_server import make_model_deployment
    from deployments.openai.ingress import make_ingress_deployment

    ensure_demo_models(args.cache)
    config = demo_config(args.cache, args.limit)
    config.models = [m for m in config.models if m.size in ("0.8b", "2b")]
    # One worker group per size, as a KubeRay config that keeps sizes apart would render them.
    config.kubernetes.worker_groups = [
        WorkerGroupConfig(name=f"cpu-{size.replace('.', '-')}", sizes=[size], gpus_per_pod=0)
        for size in ("0.8b", "2b")
    ]
    plans = plan_worker_groups(config)
    overrides = {entry["name"]: entry for entry in deployment_overrides(config, plans)}
    # Several raylets on one host share its ports: one HAProxy per node would bind the same stats and
    # metrics ports (as would the HAProxy of a cluster already running here, e.g. the test session's).
    # On KubeRay each pod has its own network namespace, so this is a property of the local stand-in.
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    local.apply_serve_env(local=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    nodes = {}
    for plan in plans:
        if plan.placement_resource:
            resources = {plan.placement_resource: float(plan.ray_resources()[plan.placement_resource])}
            nodes[plan.sizes] = cluster.add_node(num_cpus=2, resources=resources)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    figures: dict = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": config.serving.port})
        handles = {}
        for model in config.enabled_models():
            options = {k: v for k, v in overrides[model.deployment_name].items() if k != "name"}
            handles[model.size] = (
                make_model_deployment()
                .options(name=model.deployment_name, **options)
                .bind(model, str(config.cache_dir))
            )
        app = make_ingress_deployment().options(name="openai-ingress", num_replicas=1).bind(config, **handles)
        serve.run(app, name=config.serving.app_name, route_prefix="/")
        base_url = f"http://127.0.0.1:{config.serving.port}/v1"
        wait_for_health(base_url.removesuffix("/v1"), 180)
        node_2b = next(node for sizes, node in nodes.items() if "2b" in sizes)
        resources_2b = next(
            {p.placement_resource: float(p.ray_resources()[p.placement_resource])}
            for p in plans
            if "2b" in p.sizes
        )

        def remove() -> None:
            cluster.remove_node(node_2b)

        def replace() -> None:  # what KubeRay does: a new pod of the same worker group
            cluster.add_node(num_cpus=2, resources=resources_2b)

        figures.update(
            asyncio.run(
                fault_under_load(
                    base_url,
                    remove,
                    args.load_seconds,
                    "node",
                    models=("qwen3.5-0.8b", "qwen3.5-2b"),
                    repair=replace,
                )
            )
        )
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="burst,replica,ingress,node")
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--bursts", type=int, default=6, help="bursts of 128 in the burst scenario")
    parser.add_argument(
        "--warm-burst", type=int, default=0, help="an uncounted burst of this many before the first"
    )
    parser.add_argument(
        "--warm-idle-s", type=float, default=1.5, help="seconds between the warm burst and the first"
    )
    parser.add_argument("--limit", type=int, default=4, help="max_ongoing_requests of 0.8b")
    parser.add_argument(
        "--ingress-replicas",
        type=int,
        default=1,
        help="ingress replicas (2: one keeps serving while the other is killed)",
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qwen-cluster")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    figures = {}
    if set(scenarios) & {"burst", "replica", "ingress"}:
        figures.update(run_single_node(args, scenarios))
    if "node" in scenarios:
        figures.update(run_multi_node(args))
    for name, value in figures.items():
        print(f"{name} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
