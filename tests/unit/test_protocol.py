import json

import pytest

from deployments.openai.protocol import ChatCompletionRequest, CompletionRequest, OpenAIError, parse_body

pytestmark = pytest.mark.unit


def parse(model, **body):
    return parse_body(json.dumps(body).encode(), model)


def test_valid_chat_request_defaults():
    request = parse(
        ChatCompletionRequest,
        messages=[{"role": "user", "content": "hi"}],
        stop="END",
        max_completion_tokens=5,
        chat_template_kwargs={"enable_thinking": False},
    )
    assert request.stop == ["END"] and request.token_limit == 5
    assert request.chat_template_kwargs.enable_thinking is False
    assert parse(ChatCompletionRequest, messages=[{"role": "user", "content": "x"}]).stop == []


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 0.5}, "frequency_penalty"),
        ({"messages": [{"role": "user", "content": "x"}], "unknown_option": 1}, "unknown_option"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
                ]
            },
            "messages.0",
        ),
    ],
)
def test_invalid_chat_requests_name_the_field(body, param):
    with pytest.raises(OpenAIError) as info:
        parse_body(json.dumps(body).encode(), ChatCompletionRequest)
    assert info.value.status_code == 400
    assert info.value.param.startswith(param)
    assert info.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_bodies(raw):
    with pytest.raises(OpenAIError) as info:
        parse_body(raw, ChatCompletionRequest)
    assert info.value.status_code == 400 and info.value.code == "invalid_json"


def test_completion_prompt_forms():
    assert parse(CompletionRequest, prompt=["once"]).prompt == "once"
    assert parse(CompletionRequest, prompt="once").max_tokens == 16
    for bad in ({"prompt": ["a", "b"]}, {"prompt": ""}, {"prompt": "x", "echo": True}):
        with pytest.raises(OpenAIError):
            parse_body(json.dumps(bad).encode(), CompletionRequest)
