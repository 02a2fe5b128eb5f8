"""Request limits checked before any model work: body size, JSON shape, message and text counts.

The order matters: the body is read incrementally and refused (413) once it passes `max_body_bytes`
(a declared Content-Length past it is refused before reading anything); the raw bytes are scanned
for nesting depth and value count without recursion, so `[[[[...` 100,000 deep cannot reach
`json.loads`' recursion; only then is the body parsed (and shown to the caller's screen, which may
refuse it before validation: a 429 for a size that is full), validated, and checked for message,
part and text counts. Every refusal is an OpenAI error naming `param`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from cluster.config import LimitsConfig
from deployments.openai.protocol import OpenAIError, load_json_object, validate_body

# A JSON string (escapes included; the unrolled form keeps the regex engine linear) or one
# structural character. Brackets inside strings are consumed with the string, so they do not count.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
# A JSON escape of a UTF-16 surrogate code unit (U+D800-U+DFFF), paired or not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"request body is larger than the {limit}-byte limit",
        param="body",
        code="request_too_large",
    )


async def read_limited_body(receive_stream, declared_length: str | None, limit: int) -> bytes:
    """The request body, read chunk by chunk and refused as soon as it passes `limit` bytes.

    Args:
        receive_stream: an async iterator of body chunks (Starlette's `request.stream()`).
        declared_length: the Content-Length header, if any; past `limit` it is refused unread.
        limit: the most bytes accepted.

    Raises:
        OpenAIError: 413 `request_too_large`.
    """
    if declared_length is not None and declared_length.strip().isdigit() and int(declared_length) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in receive_stream:
        total += len(chunk)
        if total > limit:  # chunked bodies have no Content-Length: stop reading here
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_json_shape(raw: bytes, max_depth: int, max_elements: int) -> None:
    """Refuse bodies nested deeper than `max_depth` or holding more than `max_elements` values.

    A single pass over the bytes, without recursion and without parsing; values are counted as
    containers plus separators, an upper bound of the values a body holds. Malformed JSON passes
    here and is refused by the parser after.

    Raises:
        OpenAIError: 400 `json_too_deep` or `json_too_large`.
    """
    depth = 0
    elements = 0
    for match in _TOKENS.finditer(raw):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            elements += 1
            if depth > max_depth:
                raise OpenAIError(
                    400,
                    f"request body is nested deeper than {max_depth} levels",
                    param="body",
                    code="json_too_deep",
                )
        elif first in _CLOSE:
            depth -= 1
        elif first == ord(","):
            elements += 1
        else:
            continue
        if elements > max_elements:
            raise OpenAIError(
                400,
                f"request body holds more than {max_elements} JSON values",
                param="body",
                code="json_too_large",
            )


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.text) for part in content if getattr(part, "type", None) == "text")
    return 0


def may_hold_surrogates(raw: bytes) -> bool:
    """Whether `raw` could parse into a string holding a lone surrogate; False only when it cannot.

    `json.loads` decodes bytes with `surrogatepass` (and guesses UTF-16/32 from NUL bytes), so a
    surrogate can arrive as a `\\uD800` escape, as UTF-8-encoded surrogate bytes, or inside a
    UTF-16/32 body. A body with no NUL byte and no surrogate escape that decodes as strict UTF-8
    (which refuses encoded surrogates) holds none, and skips `check_unicode`'s walk.
    """
    if b"\x00" in raw or _SURROGATE_ESCAPE.search(raw):
        return True
    if raw.isascii():
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def check_unicode(body: Any) -> None:
    """Refuse strings holding lone UTF-16 surrogates (JSON allows `"\\ud800"`; tokenizers do not).

    Walks the validated request iteratively (models, lists, dicts) without copying it.

    Raises:
        OpenAIError: 400 naming the first such field.
    """
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise OpenAIError(
                    400,
                    f"{path or 'a string'} holds a lone UTF-16 surrogate, which is not valid Unicode text",
                    param=path or None,
                    code="invalid_parameter",
                ) from None
        elif isinstance(value, BaseModel):
            stack.extend((f"{path}.{k}" if path else k, v) for k, v in value.__dict__.items())
        elif isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
            stack.extend((path, k) for k in value if isinstance(k, str))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{path}.{i}", v) for i, v in enumerate(value))


def _parsed(step: Callable[..., Any], *args: Any) -> Any:
    """`step(*args)`, with any error the body's content provokes in it as a 400."""
    try:
        return step(*args)
    except OpenAIError:
        raise
    except (ValueError, RecursionError) as error:
        # e.g. an integer literal past Python's int-string digit limit: still the body's fault
        raise OpenAIError(
            400, f"request body is not valid JSON: {error}", param="body", code="invalid_json"
        ) from None


class RequestLimits:
    """Applies `serving.limits` to one request.

    Args:
        limits: the configured limits.
    """

    def __init__(self, limits: LimitsConfig):
        self.limits = limits

    async def parse(
        self, request, model_cls: type[BaseModel], screen: Callable[[dict[str, Any]], None] | None = None
    ) -> Any:
        """Read, check and validate a JSON request body (a Starlette request) as `model_cls`.

        Args:
            request: the request.
            model_cls: the request model.
            screen: called with the parsed JSON object before it is validated; it may raise to
                refuse the request (the ingress refuses a request for a full size there).

        Raises:
            OpenAIError: 413 for a body over the byte limit; 400 for a body too deep or too large,
                malformed, invalid, or with too many messages, parts or characters.
        """
        raw = await read_limited_body(
            request.stream(), request.headers.get("content-length"), self.limits.max_body_bytes
        )
        return self.parse_bytes(raw, model_cls, screen)

    def parse_bytes(
        self, raw: bytes, model_cls: type[BaseModel], screen: Callable[[dict[str, Any]], None] | None = None
    ) -> Any:
        """The checks of `parse` after the body is read (for bodies that did not come over HTTP)."""
        if len(raw) > self.limits.max_body_bytes:
            raise _too_large(self.limits.max_body_bytes)
        check_json_shape(raw, self.limits.max_json_depth, self.limits.max_json_elements)
        data = _parsed(load_json_object, raw)
        if screen is not None:  # outside the parse errors: what it raises is its own answer
            screen(data)
        body = _parsed(validate_body, data, model_cls)
        self.check_request(body)
        if may_hold_surrogates(raw):
            check_unicode(body)
        return body

    def check_request(self, body: Any) -> None:
        """Message count, parts per message, total text and `n` of a validated request.

        Raises:
            OpenAIError: 400 naming the field over its limit.
        """
        limits = self.limits
        chars = 0
        messages = getattr(body, "messages", None)
        if messages is not None:
            if len(messages) > limits.max_messages:
                raise OpenAIError(
                    400,
                    f"a request may carry at most {limits.max_messages} messages; got {len(messages)}",
                    param="messages",
                    code="too_many_messages",
                )
            for index, message in enumerate(messages):
                content = message.content
                if isinstance(content, list) and len(content) > limits.max_parts_per_message:
                    raise OpenAIError(
                        400,
                        f"a message may carry at most {limits.max_parts_per_message} content parts; "
                        f"message {index} has {len(content)}",
                        param=f"messages.{index}.content",
                        code="too_many_parts",
                    )
                chars += _text_chars(content)
        prompt = getattr(body, "prompt", None)
        if isinstance(prompt, str):
            chars += len(prompt)
        elif isinstance(prompt, list):
            chars += sum(len(p) for p in prompt if isinstance(p, str))
        if chars > limits.max_text_chars:
            param = "messages" if messages is not None else "prompt"
            raise OpenAIError(
                400,
                f"a request may carry at most {limits.max_text_chars} characters of text; got {chars}",
                param=param,
                code="text_too_long",
            )
        n = getattr(body, "n", None)
        if isinstance(n, int) and n > limits.max_n:
            raise OpenAIError(
                400, f"n may be at most {limits.max_n}; got {n}", param="n", code="invalid_parameter"
            )
