"""Incremental detokenization with stop strings, for streaming one request's output.

Constant work per token: like vLLM's and TGI's incremental detokenizers, each step decodes only a
small window of recent ids (from `prefix_offset`) and emits the part past the text already read
(`read_offset`), so the cost does not grow with the output's length. The window's text is kept, so
most tokens cost one decode of a few ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Ids decoded before the read offset, so a byte-level tokenizer sees enough context to render the
# new ids (a leading space, a multi-byte character split across ids).
_PREFIX_WINDOW = 6


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, honouring stop strings.

    Text that could still be the start of a stop string, or that ends in half a UTF-8 character, is
    held back until the next token decides it, so a client never sees part of a stop string.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()):
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._prefix_text = ""  # decode(ids[prefix_offset:read_offset])
        self._text = ""  # everything decoded so far (complete characters only)
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
        self._read_new_text()
        return self._safe_piece(final=False)

    def flush(self) -> str:
        """Everything held back (call once generation ended without a stop string)."""
        if self.stopped:
            return ""
        if self._read_offset < len(self._ids):
            # An incomplete character at the very end: emit what the tokenizer makes of it.
            self._text += self._decode(self._ids[self._prefix_offset :])[len(self._prefix_text) :]
            self._read_offset = len(self._ids)
        return self._safe_piece(final=True)

    def _read_new_text(self) -> None:
        window = self._decode(self._ids[self._prefix_offset :])
        if window.endswith("\ufffd") or len(window) <= len(self._prefix_text):
            return  # half a character (or nothing yet): wait for the next id
        self._text += window[len(self._prefix_text) :]
        self._read_offset = len(self._ids)
        if self._read_offset - self._prefix_offset > 2 * _PREFIX_WINDOW:
            # Slide the window forward; one extra decode every few tokens keeps the work constant.
            self._prefix_offset = self._read_offset - _PREFIX_WINDOW
            self._prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        else:
            self._prefix_text = window

    def _safe_piece(self, final: bool) -> str:
        text = self._text
        for stop in self._stop:
            # Search from just before the emitted boundary: a stop string may straddle it.
            start = max(0, self._emitted - len(stop) + 1)
            index = text.find(stop, start)
            if index != -1:
                self.stopped = True
                return self._take(index)
        hold = 0
        if not final:
            for stop in self._stop:
                for keep in range(min(len(stop) - 1, len(text) - self._emitted), hold, -1):
                    if text.endswith(stop[:keep]):
                        hold = keep
                        break
        return self._take(len(text) - hold)

    def _take(self, end: int) -> str:
        if end <= self._emitted:
            return ""
        piece = self._text[self._emitted : end]
        self._emitted = end
        return piece
