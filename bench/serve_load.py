"""Load sweep against a running OpenAI endpoint (`make up`), plus the ingress overhead.

    python bench/serve_load.py --url http://127.0.0.1:8000 [--seconds 10] [--concurrency 1,8,32,128]

For each concurrency level it runs closed-loop clients for `--seconds` and prints requests/s, p50/p99
latency and the count of each status code, then a shorter streaming run at the same level for time
to first token. Finally it compares, at max_tokens 1, a request through HTTP and the ingress with a
direct call of the model deployment's handle (attaching to the running Ray cluster) and prints the
difference at p50 and p99. Every loop is bounded in count and time; traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LevelResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    ttfts: list[float] = field(default_factory=list)
    rejected_latencies: list[float] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def body(model: str, max_tokens: int, stream: bool) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Give me a short greeting."}],
        "max_tokens": max_tokens,
        "stream": stream,
        "temperature": 0.7,
    }


class RawHTTPConnection:
    """A minimal keep-alive HTTP/1.1 client: a load generator that costs far less CPU per request
    than a full client library, so on a 2-core machine the server, not the client, is measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.head_at = 0.0  # perf_counter() when the last response head was read
        self.answered = 0  # responses read on the current socket
        self.body = b""  # the last non-chunked response's body

    async def request(self, raw: bytes, on_chunk=None) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        kept_alive = self.answered > 0
        try:
            self.writer.write(raw)
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            if not kept_alive or getattr(error, "partial", b""):
                raise
            # The server closed this kept-alive socket while it sat idle, before any response: the
            # race every pooled HTTP client retries once, on a fresh connection.
            self.close()
            return await self.request(raw, on_chunk)
        self.head_at = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                if on_chunk is not None:
                    on_chunk(data)
        else:
            self.body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        self.answered += 1
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        self.answered = 0


def encode_post(host: str, port: int, path: str, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def worker(
    host: str, port: int, raw: bytes, deadline: float, result: LevelResult, stream: bool, max_requests: int
) -> None:
    connection = RawHTTPConnection(host, port)
    sent = 0
    while time.perf_counter() < deadline and sent < max_requests:
        sent += 1
        started = time.perf_counter()
        first: list[float] = []

        def on_chunk(data: bytes, started=started, first=first) -> None:
            if not first and b'"content":"' in data and b'"content":""' not in data:
                first.append(time.perf_counter() - started)

        try:
            status, headers = await asyncio.wait_for(
                connection.request(raw, on_chunk if stream else None), 30
            )
        except (asyncio.TimeoutError, TimeoutError):
            status, headers = "timeout", {}
            connection.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            status, headers = type(error).__name__, {}
            connection.close()
        elapsed = time.perf_counter() - started
        result.statuses[status] += 1
        if status == 200:
            result.latencies.append(elapsed)
            result.ttfts.extend(first)
        elif status == 429:
            result.rejected_latencies.append(elapsed)
            # As the openai SDK does: wait what Retry-After says before trying again.
            await asyncio.sleep(float(headers.get("retry-after", 1)))
    connection.close()


async def run_level(
    url: str, model: str, concurrency: int, seconds: float, max_tokens: int, stream: bool
) -> LevelResult:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    raw = encode_post(host, port, "/v1/chat/completions", body(model, max_tokens, stream))
    result = LevelResult(concurrency, seconds)
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(worker(host, port, raw, deadline, result, stream, 100_000) for _ in range(concurrency))
    )
    result.seconds = time.perf_counter() - started
    return result


def ingress_overhead(url: str, model_deployment: str, app: str, samples: int) -> dict:
    """p50/p99 of (HTTP + ingress) latency and of a direct handle call, at max_tokens 1."""
    import ray
    from ray import serve

    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams

    ray.init(address="auto", namespace="qwen", log_to_driver=False, logging_level="ERROR")
    try:
        handle = serve.get_deployment_handle(model_deployment, app_name=app)
        request = GenerationRequest(
            request_id="bench",
            sampling=SamplingParams(max_tokens=1, temperature=0.0),
            messages=[ChatMessage("user", ["Give me a short greeting."])],
            enable_thinking=False,
        )
        handle.generate.remote(request).result()  # warm the handle's connection
        direct = []
        for _ in range(samples):
            started = time.perf_counter()
            handle.generate.remote(request).result()
            direct.append(time.perf_counter() - started)
    finally:
        ray.shutdown()
    payload = {
        "model": "qwen3.5-" + model_deployment.removeprefix("model-").replace("_", "."),
        "messages": [{"role": "user", "content": "Give me a short greeting."}],
        "max_tokens": 1,
        "temperature": 0.0,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    http = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        client.post("/v1/chat/completions", json=payload)
        for _ in range(samples):
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=payload)
            http.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return {
        "http_p50_ms": percentile(http, 0.5) * 1e3,
        "http_p99_ms": percentile(http, 0.99) * 1e3,
        "direct_p50_ms": percentile(direct, 0.5) * 1e3,
        "direct_p99_ms": percentile(direct, 0.99) * 1e3,
        "overhead_p50_ms": (percentile(http, 0.5) - percentile(direct, 0.5)) * 1e3,
        "overhead_mean_ms": (statistics.mean(http) - statistics.mean(direct)) * 1e3,
    }


def auto_overhead(url: str, model: str, samples: int) -> dict:
    """p50 latency of `model: auto` against naming the size it routes to, at max_tokens 1.

    Runs the two kinds interleaved so drift on a busy machine hits both alike.
    """
    prompt = "Give me a short greeting."
    payload = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 1,
        "temperature": 0.0,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    auto, direct = [], []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        routed = client.post("/v1/chat/completions", json={**payload, "model": "auto"})
        target = routed.headers["x-qwen-routed-model"]
        for _ in range(samples):
            for label, bucket in (("auto", auto), (target, direct)):
                started = time.perf_counter()
                response = client.post("/v1/chat/completions", json={**payload, "model": label})
                bucket.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
    return {
        "routed_to": target,
        "auto_p50_ms": percentile(auto, 0.5) * 1e3,
        "explicit_p50_ms": percentile(direct, 0.5) * 1e3,
        "auto_overhead_p50_ms": (percentile(auto, 0.5) - percentile(direct, 0.5)) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="qwen3.5-0.8b")
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stream-seconds", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--overhead-samples", type=int, default=200)
    parser.add_argument("--app", default="qwen")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per level")
    args = parser.parse_args()

    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"target {args.url}  model {args.model}  max_tokens {args.max_tokens}  {args.seconds:.0f}s per level"
    )
    print(
        f"{'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ttft p50':>9} {'ttft p99':>9} {'429 p99 ms':>10}  statuses"
    )
    results = []
    for concurrency in levels:
        level = asyncio.run(
            run_level(args.url, args.model, concurrency, args.seconds, args.max_tokens, stream=False)
        )
        streamed = asyncio.run(
            run_level(args.url, args.model, concurrency, args.stream_seconds, args.max_tokens, stream=True)
        )
        level.ttfts = streamed.ttfts
        results.append(level)
        rps = level.ok / level.seconds
        statuses = " ".join(f"{k}={v}" for k, v in sorted(level.statuses.items(), key=str))
        print(
            f"{concurrency:>5} {rps:>8.1f} {percentile(level.latencies, 0.5) * 1e3:>8.1f} "
            f"{percentile(level.latencies, 0.99) * 1e3:>8.1f} {percentile(level.ttfts, 0.5) * 1e3:>9.1f} "
            f"{percentile(level.ttfts, 0.99) * 1e3:>9.1f} {percentile(level.rejected_latencies, 0.99) * 1e3:>10.1f}  {statuses}",
            flush=True,
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "concurrency": concurrency,
                        "rps": rps,
                        "statuses": {str(k): v for k, v in level.statuses.items()},
                        "p50_ms": percentile(level.latencies, 0.5) * 1e3,
                        "p99_ms": percentile(level.latencies, 0.99) * 1e3,
                    }
                )
            )
    best = max(r.ok / r.seconds for r in results)
    for r in results:
        print(f"concurrency {r.concurrency}: {100 * (r.ok / r.seconds) / best:.0f}% of the best throughput")
    size = args.model.removeprefix("qwen3.5-").replace(".", "_")
    overhead = ingress_overhead(args.url, f"model-{size}", args.app, args.overhead_samples)
    print("ingress overhead at max_tokens 1 (HTTP + proxy + ingress, minus a direct handle call):")
    print("  " + "  ".join(f"{k}={v:.2f}" for k, v in overhead.items()))
    routed = auto_overhead(args.url, args.model, args.overhead_samples)
    print("router overhead at max_tokens 1 (model=auto minus naming the routed size):")
    print("  " + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in routed.items()))


if __name__ == "__main__":
    main()
