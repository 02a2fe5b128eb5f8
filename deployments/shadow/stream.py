"""A sampled streamed answer, collected for the shadow runner as its events go out to the client.

A streamed response never holds the whole answer: each delta is framed as an event and sent. So the
events generator hands every delta of the routed sample (choice 0, the one a non-streamed request is
labelled with too) to a `StreamTap` on its way out, and calls `finish` after its last event (`[DONE]`)
was sent. Only then, and only when the stream ended normally, does the runner get the answer: a
stream that reported an error in-band, or that the client left (the generator is closed at a yield,
so `finish` is never reached), gives no record. The tap reads deltas and never changes them, so the
client's bytes are the same whether or not the request was sampled.
"""

from __future__ import annotations

import logging

from deployments.engines.base import GenerationDelta, GenerationRequest
from deployments.model_server import GenerationResult

log = logging.getLogger(__name__)


class StreamTap:
    """One sampled stream's routed answer, handed to the runner once the stream completed.

    Args:
        runner: the `ShadowRunner` that sampled the request.
        route: the stream's route (after any capacity fallback, as the client was told).
        generation: the request as the user's first sample was asked.
        endpoint: `chat` or `completion`.
        sizes: the shadow sizes drawn for it.
    """

    def __init__(self, runner, route, generation: GenerationRequest, endpoint: str, sizes: list[str]):
        self.runner = runner
        self.route = route
        self.generation = generation
        self.endpoint = endpoint
        self.sizes = sizes
        self.pieces: list[str] = []
        self.last: GenerationDelta | None = None
        self.failed = False
        self.handed_over = False

    def feed(self, delta: GenerationDelta) -> None:
        """Keep one delta of the routed sample: its text, and the last one's counts and per-token
        log-probabilities (engines put every completion token's on the last delta, asked or not)."""
        self.pieces.append(delta.text)
        self.last = delta

    def fail(self) -> None:
        """The stream reported an error in-band: the user did not get a whole answer, so no record."""
        self.failed = True

    def result(self) -> GenerationResult | None:
        """The routed sample's whole answer, or None when its stream did not end normally."""
        last = self.last
        if self.failed or last is None or last.finish_reason is None:
            return None
        return GenerationResult(
            text="".join(self.pieces),
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            finish_reason=last.finish_reason,
            logprobs=list(last.logprobs or []),
            tokens=list(last.tokens or []),
        )

    def finish(self) -> bool:
        """Hand the answer to the runner; call only after the stream's last event was sent.

        Returns whether it was handed over (at most once: one stream, at most one record).
        """
        result = None if self.handed_over else self.result()
        if result is None:
            return False
        self.handed_over = True
        try:
            self.runner.after_stream(self.route, self.generation, result, self.endpoint, self.sizes)
        except Exception:  # runs inside the user's response: shadow work must never break it
            log.exception("could not start the shadow work of a streamed request")
            return False
        return True
