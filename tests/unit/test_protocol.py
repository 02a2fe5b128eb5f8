import json

import pytest

from deployments.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIError,
    load_json_object,
    validate_body,
)

pytestmark = pytest.mark.unit


def parse_body(raw: bytes, model):
    """What the service does with a body's bytes: load the JSON object, then validate it."""
    return validate_body(load_json_object(raw), model)


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
        ({"messages": [{"role": "user", "content": "x"}], "n": 129}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 2.5}, "frequency_penalty"),
        (
            {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21},
            "top_logprobs",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": 101}}, "logit_bias"),
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": -100.5}}, "logit_bias"),
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"ab": 1}}, "logit_bias"),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
            "response_format",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
            },
            "response_format.json_schema.name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "structured_outputs": {"regex": "a", "choice": ["a"]},
            },
            "structured_outputs",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]},
            "tools.0.function.name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
            },
            "tools.0.function.parameters",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}] * 2,
            },
            "tools",
        ),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages.0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": "x",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    }
                ]
            },
            "messages.0",
        ),
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


def test_openai_parity_fields_are_accepted():
    request = parse(
        ChatCompletionRequest,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}
                ],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        ],
        n=3,
        logprobs=True,
        top_logprobs=20,
        frequency_penalty=0.5,
        logit_bias={"12": -100, "7": 2.5},
        stop=["a", "b", "c", "d"],
        user="u-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        stream_options={"include_usage": True},
        parallel_tool_calls=False,
        tools=[
            {
                "type": "function",
                "function": {"name": "get", "parameters": {"type": "object"}, "strict": True},
            }
        ],
        tool_choice={"type": "function", "function": {"name": "get"}},
        response_format={"type": "text"},
    )
    assert request.n == 3 and request.top_logprobs == 20 and request.logit_bias == {"12": -100.0, "7": 2.5}
    assert request.messages[1].tool_calls[0].function.arguments == '{"a": 1}'
    schema = parse(
        ChatCompletionRequest,
        messages=[{"role": "user", "content": "x"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True, "description": "d"},
        },
    )
    assert schema.response_format.json_schema.schema_ == {"type": "object"}
    completion = parse(CompletionRequest, prompt="x", logprobs=5, n=2, logit_bias={"3": 1})
    assert completion.logprobs == 5 and completion.n == 2
