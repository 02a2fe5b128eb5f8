"""Request limits: body bytes (incremental, chunked too), JSON depth and size, messages, parts, text."""

import asyncio
import json
import time

import pytest

from cluster.config import LimitsConfig
from deployments.openai.limits import RequestLimits, check_json_shape, read_limited_body
from deployments.openai.protocol import ChatCompletionRequest, CompletionRequest, OpenAIError

pytestmark = pytest.mark.unit


def chat_body(**fields):
    return json.dumps(
        {"model": "qwen3.5-0.8b", "messages": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


def test_chunked_body_is_refused_once_past_the_limit_without_reading_on():
    consumed = []

    async def endless():  # a chunked upload with no Content-Length and no end
        while True:
            consumed.append(1)
            yield b"x" * 1000

    async def main():
        with pytest.raises(OpenAIError) as error:
            await read_limited_body(endless(), None, 10_000)
        return error.value

    error = asyncio.run(main())
    assert (error.status_code, error.code, error.param) == (413, "request_too_large", "body")
    assert len(consumed) == 11  # stopped at the first chunk past 10,000 bytes


def test_declared_length_over_the_limit_is_refused_unread():
    async def untouchable():
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    async def main():
        with pytest.raises(OpenAIError) as error:
            await read_limited_body(untouchable(), str(50 * 1024 * 1024), 1024 * 1024)
        return error.value

    assert asyncio.run(main()).status_code == 413


def test_body_within_the_limit_is_joined():
    async def chunks():
        yield b'{"a": '
        yield b"1}"

    assert asyncio.run(read_limited_body(chunks(), "8", 1024)) == b'{"a": 1}'


def test_deep_nesting_is_refused_without_recursion():
    started = time.perf_counter()
    with pytest.raises(OpenAIError) as error:
        check_json_shape(b"[" * 100_000 + b"]" * 100_000, max_depth=64, max_elements=100_000)
    assert (error.value.status_code, error.value.code) == (400, "json_too_deep")
    assert time.perf_counter() - started < 1.0


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"messages": [{"content": "[[[[{{{{" * 1000 + '\\"]]]"'}]}).encode()
    check_json_shape(text, max_depth=4, max_elements=100)


def test_element_count_is_limited():
    with pytest.raises(OpenAIError) as error:
        check_json_shape(json.dumps({"stop": list(range(1000))}).encode(), max_depth=64, max_elements=500)
    assert error.value.code == "json_too_large"


LIMITS = RequestLimits(
    LimitsConfig(
        max_body_bytes=64 * 1024, max_messages=3, max_parts_per_message=2, max_text_chars=100, max_n=2
    )
)


@pytest.mark.parametrize(
    "body, param, code",
    [
        (chat_body(messages=[{"role": "user", "content": "a"}] * 4), "messages", "too_many_messages"),
        (
            chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}] * 3}]),
            "messages.0.content",
            "too_many_parts",
        ),
        (chat_body(messages=[{"role": "user", "content": "a" * 101}]), "messages", "text_too_long"),
        (b'{"model": "x", "messages": [], "seed": 1' + b"1" * 5000 + b"}", "body", "invalid_json"),
    ],
)
def test_chat_limits_name_the_field(body, param, code):
    with pytest.raises(OpenAIError) as error:
        LIMITS.parse_bytes(body, ChatCompletionRequest)
    assert (error.value.status_code, error.value.param, error.value.code) == (400, param, code)


def test_prompt_text_is_limited():
    with pytest.raises(OpenAIError) as error:
        LIMITS.parse_bytes(json.dumps({"model": "m", "prompt": "p" * 101}).encode(), CompletionRequest)
    assert (error.value.param, error.value.code) == ("prompt", "text_too_long")


def test_a_body_within_every_limit_parses():
    body = LIMITS.parse_bytes(chat_body(), ChatCompletionRequest)
    assert body.messages[0].content == "hi"


def test_lone_surrogates_are_400_naming_the_field():
    # Found by the fuzz run: the tokenizer raised TypeError (a 500) on a prompt with a lone surrogate.
    raw = b'{"model": "m", "prompt": ["ok \\ude04 text"]}'
    with pytest.raises(OpenAIError) as error:
        LIMITS.parse_bytes(raw, CompletionRequest)
    assert (error.value.status_code, error.value.param) == (400, "prompt")
    pair = b'{"model": "m", "prompt": "emoji \\ud83d\\ude00 is a valid pair"}'
    assert LIMITS.parse_bytes(pair, CompletionRequest).prompt.endswith("valid pair")
    chat = chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}])
    with pytest.raises(OpenAIError) as error:
        LIMITS.parse_bytes(chat, ChatCompletionRequest)
    assert error.value.param == "messages.0.content.0.text"


@pytest.mark.parametrize(
    ("raw", "may"),
    [
        (b'{"prompt": "plain ascii"}', False),
        ('{"prompt": "héllo 世界"}'.encode(), False),  # valid UTF-8 holds no surrogate
        (b'{"prompt": "lone \\ud800"}', True),
        (b'{"prompt": "upper \\uDFFF"}', True),
        (b'{"prompt": "a pair \\ud83d\\ude00"}', True),  # conservative: the walk decides
        (b'{"prompt": "encoded \xed\xa0\x80"}', True),  # UTF-8 bytes of U+D800 (json passes them)
        ('{"prompt": "utf-16"}'.encode("utf-16-le"), True),  # NUL bytes: json guesses UTF-16
        (b'{"prompt": "not a surrogate \\u0041 \\ue000"}', False),
    ],
)
def test_may_hold_surrogates_is_false_only_when_none_can_parse(raw, may):
    from deployments.openai.limits import may_hold_surrogates

    assert may_hold_surrogates(raw) is may


def test_surrogates_that_skip_the_escape_form_are_still_400():
    # The shortcut must not let through what json.loads decodes with surrogatepass.
    encoded = b'{"model": "m", "prompt": "encoded \xed\xa0\x80 surrogate"}'
    utf16 = '{"model": "m", "prompt": "x\ud800y"}'.encode("utf-16-le", "surrogatepass")
    for raw in (encoded, utf16):
        with pytest.raises(OpenAIError) as error:
            LIMITS.parse_bytes(raw, CompletionRequest)
        assert (error.value.status_code, error.value.param) == (400, "prompt")
