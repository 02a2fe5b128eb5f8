"""What a scorer looks at: one request reduced to its text, turns and images.

Requests arrive as engine `ChatMessage`s (the ingress and batch jobs) or as OpenAI message dicts (the
JSONL files the CLI reads); both become a `RoutingInput`. Nothing here decodes images: a scorer only
counts them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from deployments.engines.base import ChatMessage, ImageInput
from deployments.router.instruction import InstructionSplit, split_instruction

# Scorers look at the head and the tail of long text: instructions sit at one end or the other, and
# scanning 5,000-token documents in full would cost more than routing may.
CUE_HEAD_CHARS = 4000
CUE_TAIL_CHARS = 1500
STRUCTURE_SIGNALS = ("tools", "structured")


@dataclass(frozen=True)
class RoutingInput:
    """One request as the scorers see it.

    Attributes:
        query: the text of the last user turn (the one to answer), or the raw prompt.
        context: the text of every other turn (system, earlier user and assistant turns).
        user_turns: how many user turns the conversation has.
        images: how many images the conversation carries.
        structure: what the request's shape asks of the answer, from `STRUCTURE_SIGNALS`: `tools`
            (it offers functions to call), `structured` (the answer is constrained to a schema,
            JSON object or grammar). A signal for the policy, never an override.
    """

    query: str
    context: str = ""
    user_turns: int = 1
    images: int = 0
    structure: tuple[str, ...] = ()

    @cached_property
    def split(self) -> InstructionSplit:
        """The query as its instruction and the material pasted for it, split once for every reader
        (the cue scanners and the embedding model)."""
        return split_instruction(self.query)

    def cue_text(self) -> str:
        """The text cue scanners read: the query's instruction first, then context, head and tail of
        it kept."""
        instruction = self.split.instruction
        text = instruction if not self.context else f"{instruction}\n{self.context}"
        if len(text) <= CUE_HEAD_CHARS + CUE_TAIL_CHARS:
            return text
        return text[:CUE_HEAD_CHARS] + "\n" + text[-CUE_TAIL_CHARS:]


def from_messages(messages: Sequence[ChatMessage], structure: Sequence[str] = ()) -> RoutingInput:
    """Reduce engine chat messages (and the request's `structure` signals) to a `RoutingInput`.

    The last user turn is the query; when there is none (an assistant prefill), the last turn is.
    """
    structure = _structure(structure)
    if not messages:
        return RoutingInput(query="", structure=structure)
    query_index = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), len(messages) - 1
    )
    context = "\n".join(m.text for i, m in enumerate(messages) if i != query_index and m.text)
    return RoutingInput(
        query=messages[query_index].text,
        context=context,
        user_turns=max(1, sum(1 for m in messages if m.role == "user")),
        images=sum(len(m.images) for m in messages),
        structure=structure,
    )


def from_prompt(prompt: str, structure: Sequence[str] = ()) -> RoutingInput:
    """A raw completion prompt: all of it is the query."""
    return RoutingInput(query=prompt, structure=_structure(structure))


def from_request(
    messages: Sequence[ChatMessage] | None, prompt: str | None, structure: Sequence[str] = ()
) -> RoutingInput:
    """The `RoutingInput` of a chat (`messages`) or a completion (`prompt`) request."""
    if messages is not None:
        return from_messages(messages, structure)
    return from_prompt(prompt or "", structure)


def _structure(signals: Sequence[str]) -> tuple[str, ...]:
    unknown = [s for s in signals if s not in STRUCTURE_SIGNALS]
    if unknown:
        raise ValueError(f"unknown structure signals {unknown}; known: {', '.join(STRUCTURE_SIGNALS)}")
    return tuple(s for s in STRUCTURE_SIGNALS if s in signals)


def openai_messages_to_chat(
    messages: Sequence[Mapping[str, Any]], extra_images: int = 0
) -> list[ChatMessage]:
    """Convert OpenAI-style message dicts (as in the JSONL files) to engine `ChatMessage`s.

    Image parts become `ImageInput`s without fetching anything: a `data:` URL is decoded, any other
    URL is kept as the source with empty bytes. `extra_images` placeholder images are added to the
    last user turn (the `"images": N` shorthand of the seed set).

    Raises:
        ValueError: for a message without a valid role or with a content part of unknown type.
    """
    chat: list[ChatMessage] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"messages[{index}]: role must be system, user, assistant or tool; got {role!r}")
        chat.append(ChatMessage(role=role, content=_content_parts(message.get("content"), index)))
    if extra_images:
        target = next((m for m in reversed(chat) if m.role == "user"), None)
        if target is None:
            target = ChatMessage(role="user", content=[])
            chat.append(target)
        target.content.extend(ImageInput(data=b"", source="placeholder") for _ in range(extra_images))
    return chat


def _content_parts(content: Any, index: int) -> list[str | ImageInput]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise ValueError(f"messages[{index}].content must be a string or a list of parts")
    parts: list[str | ImageInput] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append(str(part.get("text", "")))
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            url = url.get("url", "") if isinstance(url, Mapping) else str(url or "")
            parts.append(_image_from_url(url))
        else:
            raise ValueError(f"messages[{index}].content: unknown part type {kind!r}")
    return parts


def _image_from_url(url: str) -> ImageInput:
    if url.startswith("data:") and "," in url:
        header, payload = url.split(",", 1)
        if header.endswith(";base64"):
            try:
                return ImageInput(data=base64.b64decode(payload, validate=False), source="data-url")
            except (binascii.Error, ValueError):
                pass
        return ImageInput(data=b"", source="data-url")
    return ImageInput(data=b"", source=url)
