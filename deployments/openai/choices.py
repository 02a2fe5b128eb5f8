"""One generated sample -> one OpenAI chat `choice`: reasoning, content, tool calls, logprobs.

`ChatChoiceFramer` turns a sample's engine deltas into streamed `delta` objects; `chat_choice` builds
the non-streamed `choice` from a whole result through the same framer, so both forms agree.
Order of work per delta: reasoning split (`</think>`), then tool-call parsing of the answer only
(calls written while thinking are not calls), then logprobs on the chunk that carries the delta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployments.engines.base import TokenLogprob
from deployments.openai.reasoning import ReasoningSplitter
from deployments.openai.structured import ToolPlan
from deployments.openai.tools import RequiredCallStream, XmlToolCallParser, new_call_id


def logprob_entry(item: TokenLogprob, top: int) -> dict[str, Any]:
    """One `logprobs.content[]` entry of a chat completion."""
    return {
        "token": item.token,
        "logprob": item.logprob,
        "bytes": list(item.token.encode()),
        "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": list(token.encode())}
            for token, logprob in item.top[:top]
        ],
    }


@dataclass
class ChoicePiece:
    """A streamed chunk's worth for one choice: a `delta`, its logprobs, and the finish reason."""

    delta: dict[str, Any]
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None


@dataclass
class ChatChoiceFramer:
    """Frames one sample's output as OpenAI chat deltas.

    Args:
        thinking: whether the output opens in the thinking block.
        plan: the request's tool plan.
        top_logprobs: alternatives per token, when logprobs were asked for (else None).
    """

    thinking: bool
    plan: ToolPlan
    top_logprobs: int | None = None
    splitter: ReasoningSplitter = field(init=False)
    parser: XmlToolCallParser | None = field(init=False, default=None)
    _required: RequiredCallStream = field(init=False, default_factory=RequiredCallStream)
    _forced_id: str | None = field(init=False, default=None)
    calls: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.splitter = ReasoningSplitter(self.thinking and not self.plan.forced)
        if self.plan.mode == "auto":
            self.parser = XmlToolCallParser(self.plan.schemas)

    def feed(
        self, text: str, token_logprobs: list[TokenLogprob] | None, finish_reason: str | None
    ) -> list[ChoicePiece]:
        """The pieces for one engine delta (the last one has `finish_reason` set)."""
        deltas = self._forced(text, finish_reason) if self.plan.forced else self._free(text, finish_reason)
        pieces = [ChoicePiece(delta) for delta in deltas]
        if self.top_logprobs is not None and token_logprobs:
            entries = [logprob_entry(item, self.top_logprobs) for item in token_logprobs]
            if not pieces:
                pieces.append(ChoicePiece({}))
            pieces[0].logprobs = entries
        if finish_reason is not None:
            reason = "tool_calls" if self.calls and finish_reason == "stop" else finish_reason
            pieces.append(ChoicePiece({}, finish_reason=reason))
        return pieces

    def _free(self, text: str, finish_reason: str | None) -> list[dict[str, Any]]:
        reasoning, content = self.splitter.feed(text)
        if finish_reason is not None:
            tail_reasoning, tail_content = self.splitter.flush()
            reasoning, content = reasoning + tail_reasoning, content + tail_content
        out: list[dict[str, Any]] = []
        if reasoning:
            out.append({"reasoning_content": reasoning})
        if self.parser is None:
            if content:
                out.append({"content": content})
            return out
        pieces = self.parser.feed(content) if content else []
        if finish_reason is not None:
            pieces += self.parser.flush()
        self.calls = len(self.parser.calls)
        return out + [piece for piece in pieces if piece.get("content") != ""]

    def _forced(self, text: str, finish_reason: str | None) -> list[dict[str, Any]]:
        if self.plan.mode == "named":  # the output is the arguments: stream it as such
            out = []
            if self._forced_id is None:
                self._forced_id = new_call_id()
                self.calls = 1
                out.append(_call_start(0, self._forced_id, self.plan.forced_name or "", text))
            elif text:
                out.append({"tool_calls": [{"index": 0, "function": {"arguments": text}}]})
            return out
        # `required`: an array of calls, each streamed once its object closes; a cut-off tail is
        # dropped, so a `length` finish carries the calls completed so far (as vLLM does).
        out = []
        for call in self._required.feed(text):
            function = call["function"]
            out.append(_call_start(self.calls, call["id"], function["name"], function["arguments"]))
            self.calls += 1
        return out


def _call_start(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ]
    }


def chat_choice(
    index: int,
    text: str,
    finish_reason: str,
    framer: ChatChoiceFramer,
    token_logprobs: list[TokenLogprob] | None,
) -> dict[str, Any]:
    """A non-streamed `choices[]` entry, assembled from the framer's pieces."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    reason = finish_reason
    for piece in framer.feed(text, None, finish_reason):
        delta = piece.delta
        reason = piece.finish_reason or reason
        content.append(delta.get("content", ""))
        reasoning.append(delta.get("reasoning_content", ""))
        for call in delta.get("tool_calls", []):
            entry = calls.setdefault(
                call["index"],
                {"id": call.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
            )
            entry["function"]["name"] += call["function"].get("name", "")
            entry["function"]["arguments"] += call["function"].get("arguments", "")
    joined = "".join(content)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls and not joined.strip() else joined,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    if "".join(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    logprobs = None
    if framer.top_logprobs is not None:
        logprobs = {
            "content": [logprob_entry(item, framer.top_logprobs) for item in token_logprobs or []],
            "refusal": None,
        }
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": reason}


def completion_logprobs(items: list[TokenLogprob], top: int, offset: int = 0) -> dict[str, Any]:
    """The legacy `logprobs` object of a text completion (tokens, token_logprobs, top_logprobs,
    text_offset); `offset` is where the first token starts in the choice's text."""
    text_offset = []
    for item in items:
        text_offset.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [dict(item.top[:top]) for item in items] if top else None,
        "text_offset": text_offset,
    }
