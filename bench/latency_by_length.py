"""One client at a time: a non-streamed request's latency by answer length, per server (prints numbers;
not a test).

    python bench/latency_by_length.py [--servers vllm,project-vllm] [--rounds 2] [--requests 40]
                                      [--max-tokens 1,8,32]

Starts the servers of bench/compare_servers.py on the demo checkpoint (bf16, vLLM in eager mode, as
that script's default run), then, round after round and server after server, sends `--requests`
chat completions one after another at each max_tokens and prints the median latency and the cost of
one more answer token (the slope between the shortest and the longest). It splits a c1 gap between
two servers into what each request costs once (intake, prefill, the answer's delivery: the
intercept) and what each decoding step costs (the slope). The random-weight checkpoint rarely ends
an answer early; the printed mean completion tokens show where it did.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_servers import REPO, Server, body, demo_settings, start_server, wait_ready  # noqa: E402


async def latencies(server: Server, max_tokens: int, requests: int) -> tuple[float, float]:
    """Median milliseconds per request and mean completion tokens, one request at a time."""
    request = body(server.model, max_tokens, stream=False)
    elapsed, tokens = [], []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(requests):
            started = time.perf_counter()
            async with session.post(f"{server.base_url}/v1/chat/completions", json=request) as response:
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"{server.name}: {response.status} {answer}")
            elapsed.append((time.perf_counter() - started) * 1e3)
            tokens.append(answer["usage"]["completion_tokens"])
    return statistics.median(elapsed), statistics.mean(tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="vllm,project-vllm", help="servers of bench/compare_servers.py")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=40, help="requests per server, round and length")
    parser.add_argument("--max-tokens", default="1,8,32", help="answer lengths, comma-separated")
    parser.add_argument("--ready-timeout", type=float, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    lengths = sorted(int(v) for v in args.max_tokens.split(","))
    cache = default_cache_dir()
    settings = demo_settings(ensure_demo_models(cache, sizes=["0.8b"])["0.8b"])
    with tempfile.TemporaryDirectory(prefix="latency-by-length-") as scratch:
        servers = [
            start_server(name.strip(), cache, Path(scratch), settings, "HEAD")
            for name in args.servers.split(",")
        ]
        try:
            for server in servers:
                asyncio.run(wait_ready(server, args.ready_timeout))
                if server.error:
                    print(f"{server.name} could not start: {server.error}", file=sys.stderr)
                    return 1
                asyncio.run(latencies(server, lengths[-1], 5))  # warm
            print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: median ms per request, one client")
            for round_index in range(args.rounds):
                for server in servers:
                    figures = {m: asyncio.run(latencies(server, m, args.requests)) for m in lengths}
                    slope = (figures[lengths[-1]][0] - figures[lengths[0]][0]) / max(
                        figures[lengths[-1]][1] - figures[lengths[0]][1], 1e-9
                    )
                    cells = ", ".join(
                        f"{m} tokens {ms:.1f} (mean {n:.1f} out)" for m, (ms, n) in figures.items()
                    )
                    print(
                        f"round {round_index + 1} {server.name:<14} {cells}; {slope:.2f} ms per token",
                        flush=True,
                    )
        finally:
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
