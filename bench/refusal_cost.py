"""Ingress CPU per refused request: what each 429 of a burst costs the ingress's event loop.

    python bench/refusal_cost.py [--requests 3000] [--ref HEAD] [--rounds 3] [--profile]

A streamed chat for the demo 0.8b (the body of bench/chaos.py's burst) goes through
`OpenAIService.handle` in process, as Serve calls it, while every slot of 0.8b is held and no slot
has come back lately, so each request is read, validated, routed and refused with a 429. The working
tree and the tree at git `--ref` run in child processes, alternating, and print microseconds per
refused request (median of the rounds). A burst of 128 on one ingress replica answers its last 429
after roughly 128 times this, so it bounds the burst's 429 p99 from below. `--profile` prints the
working tree's cProfile instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from git_tree import export_tree

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "model": "qwen3.5-0.8b",
    "messages": [{"role": "user", "content": "count"}],
    "max_tokens": 16,
    "stream": True,
}


def child(requests: int, profile: bool) -> dict:
    """Runs in the tree under test (its root is the working directory and first on sys.path)."""
    import asyncio

    sys.path.insert(0, str(Path.cwd()))
    from starlette.requests import Request

    from cluster.config import load_config
    from deployments.openai.capacity import CapacityTracker
    from deployments.openai.service import OpenAIService
    from deployments.router import build_router

    config = load_config(profile="demo")
    sizes = [m.size for m in config.enabled_models()]
    router = build_router(config.router, served_sizes=sizes)
    raw = json.dumps(BODY).encode()
    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "query_string": b"",
    }  # fmt: skip

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def run() -> dict:
        capacity = CapacityTracker(config)
        service = OpenAIService(config, {}, router, capacity=capacity)
        held = [capacity.admit("0.8b") for _ in range(int(capacity.limit("0.8b")))]
        statuses = []
        for _ in range(50):  # first-call costs out of the timing
            statuses.append((await service.handle(Request(scope, receive))).status_code)
        if profiler is not None:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(requests):
            statuses.append((await service.handle(Request(scope, receive))).status_code)
        if profiler is not None:
            profiler.disable()
        figures = {
            "us_per_request": 1e6 * (time.perf_counter() - started) / requests,
            "cpu_us_per_request": 1e6 * (time.process_time() - cpu) / requests,
            "statuses": sorted(set(statuses)),
        }
        for slot in held:
            slot.release()
        await service.close()
        return figures

    import cProfile
    import pstats

    profiler = cProfile.Profile() if profile else None
    figures = asyncio.run(run())
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(45)
    return figures


def run_child(tree: Path, requests: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--requests", str(requests)]
    done = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--ref", default="HEAD", help="git ref to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the working tree instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.profile:
        print(json.dumps(child(args.requests, args.profile)))
        return
    results: dict[str, list[dict]] = {"working tree": [], args.ref: []}
    with tempfile.TemporaryDirectory(prefix="refusal-cost-") as tmp:
        trees = {"working tree": ROOT, args.ref: export_tree(args.ref, Path(tmp))}
        for round_ in range(args.rounds):
            names = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in names:
                result = run_child(trees[name], args.requests)
                results[name].append(result)
                print(
                    f"round {round_ + 1} {name:>12}: {result['us_per_request']:.0f} us per refused request "
                    f"({result['cpu_us_per_request']:.0f} us CPU), statuses {result['statuses']}",
                    flush=True,
                )
    medians = {name: statistics.median(r["us_per_request"] for r in runs) for name, runs in results.items()}
    print(
        f"median of {args.rounds}: working tree {medians['working tree']:.0f} us, {args.ref} {medians[args.ref]:.0f} us "
        f"per refused request ({medians[args.ref] / medians['working tree']:.2f}x less time per 429)"
    )


if __name__ == "__main__":
    main()
