"""Shadow answers: a sampled `auto` request is answered again on larger sizes after the user's answer
went out, and one label record is written for it.

Rules that keep it off the user's path:
- it starts only after the response was sent (a Starlette background task that just schedules it);
- nothing is sampled while the cluster is loaded: any size with requests waiting in this ingress
  replica's line, or past `max_busy_fraction` of its admission limit (`skipped_busy`); and, where
  `max_host_cpu` is set (sizes sharing the ingress host's CPUs), while the host's CPUs were busier
  than that share in any of the last five seconds (`skipped_host_cpu`);
- a shadow size must be idle: its user requests plus shadow answers in flight on this ingress
  replica under `max_busy_fraction` of its admission limit, a ready replica, and fewer than
  `max_in_flight_per_size` shadow answers running there. Otherwise that size's answer is dropped
  (recorded as `dropped_busy`), never queued or delayed;
- a shadow answer takes no admission slot: admission counts user requests only; and the moment
  any user request is refused (429), every running shadow answer is cancelled (`preempted`) and
  none starts for `pause_after_refusal_s`: sizes share hosts and CPUs, so even an idle size's
  shadow work takes compute that an overloaded one needs;
- it is never billed: its tokens go neither into a response's `usage` nor into the token metric,
  only into `ray_qwen_shadow_total{size,outcome}`.
Non-streamed and streamed requests are both sampled. A non-streamed answer is whole when the response
is made; a streamed one is collected as its events go out (`deployments/shadow/stream.py`) and handed
over only after its last event was sent, and only if it ended normally.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cluster.catalog import SIZES
from cluster.shadow_config import ShadowConfig
from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
from deployments.router import agreement
from deployments.shadow.host_cpu import HostCpu
from deployments.shadow.labels import SCHEMA_VERSION, answer_entry, digest, request_hash
from deployments.shadow.stream import StreamTap
from deployments.shadow.writer import LabelWriter

log = logging.getLogger(__name__)


def shadow_sizes(routed: str, served: list[str], rule: str) -> list[str]:
    """The sizes that answer again for a request routed to `routed` (larger served sizes only)."""
    larger = [s for s in SIZES if s in served and SIZES.index(s) > SIZES.index(routed)]
    if not larger:
        return []
    if rule == "largest":
        return [larger[-1]]
    if rule == "all_larger":
        return larger
    return sorted({larger[0], larger[-1]}, key=SIZES.index)


class ShadowRunner:
    """Samples routed requests and runs their shadow answers in the background.

    Args:
        config: `router.shadow`; replaced at run time by `reconfigure` (no restart).
        clients: a `ModelClient` per served size (the same ones users reach).
        capacity: the ingress's `CapacityTracker` (read only: shadows take no slots).
        writer: where records go; None when no output is configured.
        metrics: `ServingMetrics`, or None.
        rng: the sampling decision's random source (tests seed it).
        host_cpu: the host's CPU reading, asked only when `max_host_cpu` is set.
    """

    def __init__(
        self,
        config: ShadowConfig,
        clients: Mapping[str, Any],
        capacity,
        writer: LabelWriter | None,
        metrics=None,
        rng: random.Random | None = None,
        host_cpu: HostCpu | None = None,
    ):
        self.clients = dict(clients)
        self.capacity = capacity
        self.writer = writer
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.host_cpu = host_cpu
        self.reconfigure(config)
        self.generating: set[asyncio.Future] = set()
        self.refused_at = float("-inf")
        self.running: dict[str, int] = dict.fromkeys(self.clients, 0)
        self.tasks: set[asyncio.Task] = set()
        self.records = 0

    def reconfigure(self, config: ShadowConfig) -> None:
        """Take new settings (enabled, sample_rate, ...) now; the output and writer stay as built."""
        self.config = config
        if config.max_host_cpu is not None and self.host_cpu is None:
            self.host_cpu = HostCpu()  # its first window starts now

    # ---- sampling ------------------------------------------------------------------------------
    def draw(self, route) -> list[str] | None:
        """The sizes that answer again when this request is sampled, else None.

        Only the cheap random draw: taken before any other work for the request, so an unsampled
        request (streamed or not) pays for nothing else. Whether the cluster is loaded is asked
        later, once the user's answer is done (`after_response`, `after_stream`).
        """
        config = self.config
        if not config.enabled or self.writer is None or route.decision is None or config.sample_rate <= 0:
            return None
        sizes = shadow_sizes(route.model.size, list(self.clients), config.sizes)
        if not sizes or self.rng.random() >= config.sample_rate:
            return None
        return sizes

    def after_response(self, route, generation: GenerationRequest, result, endpoint: str):
        """A Starlette background task that schedules the shadow work for this request, or None
        when it is not sampled. Called for non-streamed answers, before the response is made."""
        sizes = self.draw(route)
        if sizes is None or self._skip_busy():
            return None
        from starlette.background import BackgroundTask

        return BackgroundTask(self._schedule, route, generation, result, endpoint, sizes)

    def stream_tap(self, route, generation: GenerationRequest, endpoint: str) -> StreamTap | None:
        """A `StreamTap` that collects this streamed request's answer as its events go out, or
        None when it is not sampled (then the stream does no shadow work at all)."""
        sizes = self.draw(route)
        return None if sizes is None else StreamTap(self, route, generation, endpoint, sizes)

    def after_stream(self, route, generation: GenerationRequest, result, endpoint: str, sizes) -> None:
        """Start the shadow work of a sampled stream whose last event was sent (see `StreamTap`)."""
        if not self._skip_busy():
            self._start(route, generation, result, endpoint, sizes)

    def _skip_busy(self) -> bool:
        if self.busy():
            self._count("", "skipped_busy")  # not sampled: shadow work waits for a quiet moment
            return True
        if self._host_cpu_busy():
            self._count("", "skipped_host_cpu")
            return True
        return False

    def _host_cpu_busy(self) -> bool:
        limit = self.config.max_host_cpu
        # reconfigure built a reading whenever a limit is set
        return limit is not None and self.host_cpu.busy_share() >= limit

    async def _schedule(self, route, generation, result, endpoint: str, sizes: list[str]) -> None:
        # Run here, once the response went out (Starlette skips background work when sending
        # fails), so `sampled` and `recorded` count the same requests.
        self._start(route, generation, result, endpoint, sizes)

    def _start(self, route, generation, result, endpoint: str, sizes: list[str]) -> None:
        self._count("", "sampled")
        task = asyncio.get_running_loop().create_task(self.run(route, generation, result, endpoint, sizes))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- running -------------------------------------------------------------------------------
    def busy(self) -> bool:
        """Whether any served size has requests waiting in line or is past `max_busy_fraction` of
        its limit: the cluster is loaded, so no shadow work starts. Sizes often share hosts, CPUs
        and the ingress's own event loop, so one size's idle engine is not enough (measured on 2
        cores: shadows at rate 1.0 under overload cost users throughput until this rule)."""
        if time.monotonic() - self.refused_at < self.config.pause_after_refusal_s:
            return True
        capacity = self.capacity
        fraction = self.config.max_busy_fraction
        return any(
            capacity.waiting[size] or capacity.in_flight[size] >= fraction * capacity.limit(size)
            for size in capacity.models
        )

    def idle(self, size: str) -> bool:
        """Whether `size` may take a shadow answer now (see the module's rules)."""
        capacity = self.capacity
        if self.busy():
            return False
        if self.running.get(size, 0) >= self.config.max_in_flight_per_size:
            return False
        if capacity.ready is not None and capacity.ready.get(size, 1) < 1:
            return False
        if capacity.waiting[size]:
            return False
        busy = capacity.in_flight[size] + self.running.get(size, 0)
        return busy < self.config.max_busy_fraction * capacity.limit(size)

    async def _answer(self, size: str, request: GenerationRequest):
        """(outcome, result) of one shadow answer."""
        if not self.idle(size):
            return "dropped_busy", None
        self.running[size] += 1
        # Its own task, so a user's refusal can stop it (`note_refusal`) and this run still records.
        generation = asyncio.ensure_future(self.clients[size].generate(request))
        self.generating.add(generation)
        try:
            await asyncio.wait({generation}, timeout=self.config.timeout_s)
            if not generation.done():
                return "timeout", None
            if generation.cancelled():
                return "preempted", None
            if generation.exception() is not None:  # a shadow failure is counted, never raised
                log.debug("shadow answer on %s failed: %r", size, generation.exception())
                return "error", None
            return "answered", generation.result()
        finally:
            if not generation.done():
                generation.cancel()  # timed out, or this run was cancelled: stop the engine row
            self.generating.discard(generation)
            self.running[size] -= 1

    def note_refusal(self) -> None:
        """A user request was refused (429): stop every shadow answer now and start none for
        `pause_after_refusal_s`, so shadow work never stands between a user and capacity."""
        self.refused_at = time.monotonic()
        for generation in list(self.generating):
            generation.cancel()

    def _shadow_request(self, generation: GenerationRequest, size: str) -> GenerationRequest:
        """The user's first sample, same settings, fixed seed, no alternatives."""
        sampling: SamplingParams = dataclasses.replace(
            generation.sampling, seed=self.config.seed, logprobs=False, top_logprobs=0
        )
        return dataclasses.replace(
            generation, request_id=f"{generation.request_id}-shadow-{size}", sampling=sampling
        )

    async def run(
        self, route, generation: GenerationRequest, result, endpoint: str, sizes: list[str]
    ) -> dict[str, Any] | None:
        """Answer on `sizes`, compare, and hand one record to the writer; returns the record."""
        try:
            config = self.config
            outcomes = await asyncio.gather(
                *(self._answer(s, self._shadow_request(generation, s)) for s in sizes)
            )
            for size, (outcome, _) in zip(sizes, outcomes, strict=True):
                self._count(size, outcome)
            answers = [answer_entry(route.model.size, "user", "answered", result, config.store_text)]
            answers += [
                answer_entry(size, "shadow", outcome, shadow, config.store_text)
                for size, (outcome, shadow) in zip(sizes, outcomes, strict=True)
            ]
            texts = {route.model.size: result.text} | {
                size: shadow.text
                for size, (_, shadow) in zip(sizes, outcomes, strict=True)
                if shadow is not None
            }
            kind = await self._compare(answers, texts)
            record = self._record(route, generation, endpoint, answers, kind)
            self.writer.add(record)
            self.records += 1
            self._count("", "recorded")
            return record
        except asyncio.CancelledError:
            raise
        except Exception:  # shadow work must never disturb serving
            log.exception("shadow run failed")
            self._count("", "failed")
            return None

    async def _compare(self, answers: list[dict[str, Any]], texts: dict[str, str]) -> str:
        """Fill each answer's `agreement` / `correct` against the largest size that answered; the
        kind of comparison used (`none` when no shadow answered)."""
        reference = max(texts, key=SIZES.index)
        if reference == answers[0]["size"]:
            return "none"  # no larger size answered: nothing to compare with
        kind = agreement.verifiable_kind(texts[reference])
        for entry in answers:
            size = entry["size"]
            if size == reference or size not in texts:
                continue
            verdict = agreement.agree(kind, texts[size], texts[reference])
            how = kind
            if verdict is None and self.config.judge_size is not None:
                verdict = await self._judge(texts[size], texts[reference])
                how = "judge" if verdict is not None else "none"
            entry["agreement"], entry["correct"] = how, verdict
        for entry in answers:
            if entry["size"] == reference:
                entry["agreement"] = "reference"
        return kind

    async def _judge(self, answer: str, reference: str) -> bool | None:
        size = self.config.judge_size
        if size not in self.clients:
            return None
        request = GenerationRequest(
            request_id=f"shadow-judge-{self.rng.getrandbits(48):012x}",
            sampling=SamplingParams(max_tokens=4, temperature=0.0, seed=self.config.seed),
            messages=[ChatMessage(role="user", content=[agreement.judge_prompt(answer, reference)])],
            enable_thinking=False,
        )
        outcome, result = await self._answer(size, request)
        self._count(size, f"judge_{outcome}")
        return agreement.judge_verdict(result.text) if result is not None else None

    def _record(
        self, route, generation: GenerationRequest, endpoint: str, answers, kind: str
    ) -> dict[str, Any]:
        decision = route.decision
        messages = (
            [_message_dict(m) for m in generation.messages] if generation.messages is not None else None
        )
        sampling = dataclasses.asdict(generation.sampling)
        sampling.pop("structured", None)
        prompt_text = None
        if self.config.store_text:
            prompt_text = (
                generation.prompt
                if generation.prompt is not None
                else json.dumps(messages, ensure_ascii=False)
            )
        return {
            "schema_version": SCHEMA_VERSION,
            "record_id": f"{generation.request_id}-{self.rng.getrandbits(32):08x}",
            "request_hash": request_hash(endpoint, messages, generation.prompt, sampling),
            "created_at": datetime.now(UTC),
            "endpoint": endpoint,
            "scorer": decision.scorer,
            "family": decision.family,
            "difficulty": float(decision.difficulty),
            "features_json": json.dumps(decision.features, sort_keys=True),
            "estimates_json": json.dumps(decision.estimates, sort_keys=True),
            "raw_estimates_json": json.dumps(decision.raw_estimates or decision.estimates, sort_keys=True),
            "routed_size": decision.size,
            "route_reason": decision.reason,
            "reference_size": max(
                (a["size"] for a in answers if a["outcome"] == "answered"), key=SIZES.index
            ),
            "verifiable": kind,
            "prompt_text": prompt_text,
            "answers": answers,
        }

    def _count(self, size: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.record_shadow(size, outcome)

    async def close(self) -> None:
        """Cancel running shadow work and write what the writer holds."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writer is not None:
            await self.writer.close()


def _message_dict(message: ChatMessage) -> dict[str, Any]:
    """A chat message as plain data for hashing: text as is, an image by a digest of its form."""
    content = message.content if isinstance(message.content, list) else [message.content]
    parts = [part if isinstance(part, str) else {"image": digest(repr(part))} for part in content]
    return {
        "role": message.role,
        "content": parts,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
    }
