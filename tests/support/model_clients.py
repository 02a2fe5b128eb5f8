"""Scripted `ModelClient`s for the serving core's unit tests (dispatch, capacity, streaming).

The engines themselves are always real; these stand in for the *transport* to a size (a Serve handle)
so tests can script what the network does: a slow first token, a replica that dies, an error after
the first token. Every wait is an `asyncio.Event` the test sets, never a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from deployments.engines.base import GenerationDelta, GenerationRequest
from deployments.model_server import GenerationResult


def replica_died() -> Exception:
    """The error a Serve handle raises when the replica under a request dies."""
    from ray.exceptions import ActorDiedError

    return ActorDiedError()


class ScriptedClient:
    """A size whose calls follow a script.

    Args:
        pieces: the text deltas each call yields (the last one carries `finish_reason="stop"`).
        fail_first: errors raised by the first calls, one per call, before any delta.
        error_after_first: raised after the first delta of a stream.
        gate: when set, every call waits for this event before its first delta (slow first token).
    """

    def __init__(
        self,
        pieces: tuple[str, ...] = ("Hello", " world"),
        *,
        fail_first: list[Exception] | None = None,
        error_after_first: Exception | None = None,
        gate: asyncio.Event | None = None,
    ):
        self.pieces = pieces
        self.fail_first = list(fail_first or [])
        self.error_after_first = error_after_first
        self.gate = gate
        self.requests: list[GenerationRequest] = []
        self.waiting = 0  # calls parked at the gate right now
        self.arrived = asyncio.Event()  # set when a call reaches the gate
        self.finished = 0  # streams that yielded their last delta
        self.cut_short = 0  # streams closed or cancelled before their last delta

    def _deltas(self) -> list[GenerationDelta]:
        deltas = []
        for index, text in enumerate(self.pieces):
            last = index == len(self.pieces) - 1
            deltas.append(
                GenerationDelta(
                    text=text,
                    prompt_tokens=3,
                    completion_tokens=index + 1,
                    finish_reason="stop" if last else None,
                    logprobs=[-0.5] * (index + 1) if last else None,
                    tokens=list(self.pieces) if last else None,
                )
            )
        return deltas

    async def _begin(self, request: GenerationRequest) -> None:
        self.requests.append(request)
        if self.fail_first:
            raise self.fail_first.pop(0)
        if self.gate is not None:
            self.waiting += 1
            self.arrived.set()
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        await self._begin(request)
        deltas = self._deltas()
        return GenerationResult(
            text="".join(self.pieces),
            prompt_tokens=3,
            completion_tokens=len(deltas),
            finish_reason="stop",
            logprobs=deltas[-1].logprobs or [],
            tokens=deltas[-1].tokens or [],
        )

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        async def run() -> AsyncIterator[GenerationDelta]:
            done = False
            try:
                await self._begin(request)
                for index, delta in enumerate(self._deltas()):
                    if index == 1 and self.error_after_first is not None:
                        raise self.error_after_first
                    yield delta
                done = True
                self.finished += 1
            finally:
                if not done:
                    self.cut_short += 1

        return run()
