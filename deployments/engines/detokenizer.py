"""Incremental detokenization with stop strings, for streaming one request's output."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, honouring stop strings.

    Text that could still be the start of a stop string, or that ends in half a UTF-8 character, is
    held back until the next token decides it, so a client never sees part of a stop string.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()):
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._emitted = 0
        self.stopped = False

    @property
    def token_ids(self) -> list[int]:
        """Token ids added so far (a copy)."""
        return list(self._ids)

    @property
    def token_count(self) -> int:
        """Tokens added so far."""
        return len(self._ids)

    def add(self, token_id: int) -> str:
        """Add one token and return the text that is now safe to emit (may be empty).

        After a stop string is found, `stopped` is True and the text before it has been returned.
        """
        if self.stopped:
            return ""
        self._ids.append(token_id)
        text = self._decode(self._ids)
        for stop in self._stop:
            # Search from just before the emitted boundary: a stop string may straddle it.
            start = max(0, self._emitted - len(stop) + 1)
            index = text.find(stop, start)
            if index != -1:
                self.stopped = True
                return self._take(text, index)
        safe_end = len(text)
        if text.endswith("\ufffd"):
            safe_end = len(text.rstrip("\ufffd"))
        for stop in self._stop:
            for keep in range(min(len(stop) - 1, safe_end - self._emitted), 0, -1):
                if text[safe_end - keep : safe_end] == stop[:keep]:
                    safe_end -= keep
                    break
        return self._take(text, safe_end)

    def flush(self) -> str:
        """Everything held back (call once generation ended without a stop string)."""
        if self.stopped:
            return ""
        text = self._decode(self._ids)
        return self._take(text, len(text))

    def _take(self, text: str, end: int) -> str:
        if end <= self._emitted:
            return ""
        piece = text[self._emitted : end]
        self._emitted = end
        return piece
