"""Turn validated OpenAI messages into engine `ChatMessage`s, fetching every image once."""

from __future__ import annotations

import asyncio

from deployments.engines.base import ChatMessage, EngineRequestError, ImageInput, InvalidImageError
from deployments.openai.media import ImageFetcher
from deployments.openai.protocol import ImagePart, Message

_ROLES = {"developer": "system"}


async def to_chat_messages(
    messages: list[Message], fetcher: ImageFetcher, max_images: int
) -> list[ChatMessage]:
    """Engine messages in the same order, images fetched concurrently.

    Raises:
        InvalidImageError: more than `max_images` images, or an image URL that cannot be fetched;
            `param` names the offending part (`messages[2].content[1].image_url`).
    """
    check_tool_history(messages)  # before any image is fetched
    locations = [
        (i, j, part)
        for i, message in enumerate(messages)
        if isinstance(message.content, list)
        for j, part in enumerate(message.content)
        if isinstance(part, ImagePart)
    ]
    if len(locations) > max_images:
        raise InvalidImageError(
            f"the request carries {len(locations)} images; at most {max_images} are accepted",
            code="too_many_images",
        )

    async def fetch(i: int, j: int, part: ImagePart) -> bytes:
        try:
            return await fetcher.fetch(part.image_url.url)
        except InvalidImageError as error:
            error.param = f"messages[{i}].content[{j}].image_url"
            raise
        except asyncio.TimeoutError:
            raise InvalidImageError(
                f"fetching the image at messages[{i}].content[{j}] took longer than "
                f"{fetcher.media.fetch_timeout_s}s",
                param=f"messages[{i}].content[{j}].image_url",
                code="image_fetch_timeout",
            ) from None

    fetched = await asyncio.gather(*(fetch(*location) for location in locations))
    images = {
        (i, j): ImageInput(data, source=_describe(part.image_url.url))
        for (i, j, part), data in zip(locations, fetched, strict=True)
    }

    result = []
    for i, message in enumerate(messages):
        role = _ROLES.get(message.role, message.role)
        if message.content is None:
            parts: list[str | ImageInput] = [""]
        elif isinstance(message.content, str):
            parts = [message.content]
        else:
            parts = [
                images[(i, j)] if isinstance(part, ImagePart) else part.text
                for j, part in enumerate(message.content)
            ]
        tool_calls = [call.model_dump() for call in message.tool_calls] if message.tool_calls else None
        result.append(
            ChatMessage(
                role=role,
                content=parts,
                tool_calls=tool_calls,
                tool_call_id=message.tool_call_id if message.role == "tool" else None,
                name=message.name,
            )
        )
    return result


def check_tool_history(messages: list[Message]) -> None:
    """Every `tool` message answers a call an earlier assistant message made.

    Raises:
        EngineRequestError: 400 naming `messages[i].tool_call_id`.
    """
    called: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.tool_calls or []:
            called.add(call.id)
        if message.role == "tool" and message.tool_call_id not in called:
            raise EngineRequestError(
                f"messages[{i}] answers tool_call_id {message.tool_call_id!r}, which no earlier "
                "assistant message called",
                param=f"messages[{i}].tool_call_id",
                code="invalid_tool_call_id",
            )


def _describe(url: str) -> str:
    """A short label of an image's origin for error messages (never the whole data URL)."""
    return url[:30] + "..." if url.startswith("data:") else url[:200]
