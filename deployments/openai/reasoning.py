"""Split Qwen3 thinking output into `reasoning_content` and `content` while streaming.

With thinking on, the chat template opens `<think>` in the prompt, so generated text is reasoning
until `</think>` and the answer after it (what vLLM's `qwen3` reasoning parser does). With thinking
off the template closes an empty block, and all generated text is the answer.
"""

from __future__ import annotations

THINK_END = "</think>"


class ReasoningSplitter:
    """Feeds text deltas, returns (reasoning, content) deltas; holds back a partial `</think>`."""

    def __init__(self, thinking: bool):
        self.in_reasoning = thinking
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Split one delta; either part may be empty."""
        if not self.in_reasoning:
            return "", text
        text = self._held + text
        self._held = ""
        index = text.find(THINK_END)
        if index != -1:
            self.in_reasoning = False
            return text[:index], text[index + len(THINK_END) :].lstrip("\n")
        for keep in range(min(len(THINK_END) - 1, len(text)), 0, -1):
            if THINK_END.startswith(text[-keep:]):
                self._held = text[-keep:]
                return text[:-keep], ""
        return text, ""

    def flush(self) -> tuple[str, str]:
        """Whatever is held back at the end of generation."""
        held, self._held = self._held, ""
        return (held, "") if self.in_reasoning else ("", held)
