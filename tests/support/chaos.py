"""Fault injection helpers shared by the chaos tests and bench/chaos.py: steady load, replica kills,
health watching. Everything talks to a real local Ray cluster and real HTTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    """What a steady load saw, request by request."""

    finished: list[tuple[float, int, float]] = field(default_factory=list)  # (end time, status, seconds)
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503, in-band server errors
    unavailable_retry_after: list[str | None] = field(default_factory=list)  # each 503's Retry-After
    overloaded: int = 0  # 429s with Retry-After: admission refusing, not a request lost
    hangs: int = 0

    def ok_after(self, moment: float) -> int:
        """Successful requests that ended after `moment` (time.monotonic)."""
        return sum(1 for end, status, _ in self.finished if end > moment and status == 200)

    def p99(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        """p99 latency of successful requests ending in [since, until)."""
        latencies = sorted(s for end, status, s in self.finished if status == 200 and since <= end < until)
        return latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else None

    @property
    def lost(self) -> int:
        """Requests that did not get an answer (503s, server errors, hangs)."""
        return len(self.unavailable_retry_after) + len(self.server_errors) + self.hangs


async def run_load(
    base_url: str,
    model: str,
    *,
    workers: int,
    streamed_workers: int = 0,
    stop: asyncio.Event,
    max_tokens: int = 8,
    timeout_s: float = 60.0,
    pause_s: float = 0.0,
) -> LoadResult:
    """Closed-loop load on `model` until `stop` is set: `workers` non-streamed clients and
    `streamed_workers` streamed ones, each sending its next request when the last one ends."""
    result = LoadResult()
    limits = httpx.Limits(max_connections=workers + streamed_workers + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as http:

        async def worker(streamed: bool) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "tell me about the sea"}],
                "max_tokens": max_tokens,
                "stream": streamed,
            }
            while not stop.is_set():
                started = time.monotonic()
                try:
                    async with http.stream("POST", "/chat/completions", json=body) as response:
                        content = await response.aread()
                except httpx.TimeoutException:
                    result.hangs += 1
                    continue
                except httpx.TransportError as error:  # connection refused or reset: counted as lost
                    result.server_errors.append(f"transport: {error!r}")
                    continue
                now = time.monotonic()
                status = response.status_code
                if status == 503:
                    result.unavailable_retry_after.append(response.headers.get("retry-after"))
                elif status >= 500:
                    result.server_errors.append(f"{status}: {content[:200]!r}")
                elif status == 429 and response.headers.get("retry-after"):
                    result.overloaded += 1
                elif status == 200 and streamed and b'"error"' in content:
                    text = content.decode(errors="replace")
                    if '"code":"replica_unavailable"' in text.replace(" ", ""):
                        result.unavailable_retry_after.append("in-band")
                    else:
                        result.server_errors.append(f"in-band: {text[-300:]}")
                    status = 503
                result.finished.append((now, status, now - started))
                if pause_s:
                    await asyncio.sleep(pause_s)

        await asyncio.gather(
            *(worker(False) for _ in range(workers)), *(worker(True) for _ in range(streamed_workers))
        )
    return result


def replica_actor_names(app_name: str, deployment: str) -> list[tuple[str, str]]:
    """(name, namespace) of the live Serve replica actors of one deployment."""
    import ray

    marker = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return [
        (entry["name"], entry["namespace"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith(marker)
    ]


def kill_replicas(app_name: str, deployment: str, count: int | None = None) -> list[str]:
    """Kill `count` replicas of a deployment, or every one (as a crash would: no graceful shutdown);
    returns the killed replicas' actor names."""
    import ray

    names = replica_actor_names(app_name, deployment)[:count]
    for name, namespace in names:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    return [name for name, _ in names]


def wait_for_health(
    base: str, timeout_s: float = 60.0, expect_outage: bool = False
) -> list[tuple[float, int]]:
    """Poll `/healthz` until it answers 200 (after a non-200, when `expect_outage`).

    Returns every (time.monotonic, status) observed. Polling is the only signal a client has.

    Raises:
        TimeoutError: not healthy within `timeout_s`.
    """
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    outage = not expect_outage
    while time.monotonic() < deadline:
        try:
            status = httpx.get(base + "/healthz", timeout=5).status_code
        except httpx.TransportError:
            status = 0
        seen.append((time.monotonic(), status))
        outage = outage or status != 200
        if outage and status == 200:
            return seen
        time.sleep(0.1)
    raise TimeoutError(f"/healthz not back to 200 within {timeout_s} s; last {seen[-5:]}")
