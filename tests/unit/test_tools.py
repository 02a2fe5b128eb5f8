"""Qwen3.5 (qwen3_coder XML) tool-call parsing, streamed and not, and tool plans and grammars."""

import json

import pytest

from deployments.engines.base import ChatMessage, TokenLogprob
from deployments.engines.prompting import template_messages
from deployments.openai.choices import ChatChoiceFramer, chat_choice
from deployments.openai.structured import ToolPlan, forced_call_schema
from deployments.openai.tools import XmlToolCallParser, convert_value, forced_calls

pytestmark = pytest.mark.unit

SCHEMAS = {
    "get_weather": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "scale": {"type": "number"},
            "hourly": {"type": "boolean"},
            "options": {"type": "object"},
            "tags": {"type": "array"},
            "note": {"type": ["string", "null"]},
        },
    },
    "noop": {"type": "object", "properties": {}},
}

ONE_CALL = (
    "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n<parameter=scale>\n1.5\n</parameter>\n<parameter=hourly>\nTrue\n"
    "</parameter>\n<parameter=options>\n{'units': 'metric'}\n</parameter>\n<parameter=tags>\n[\"a\", 1]\n"
    "</parameter>\n<parameter=note>\nline one\nline two\n</parameter>\n</function>\n</tool_call>"
)
TWO_CALLS = ONE_CALL + "\n<tool_call>\n<function=noop>\n</function>\n</tool_call>"


def non_streamed_answer(text: str, schemas: dict) -> tuple[str | None, list[dict]]:
    """(content, tool_calls) of the non-streamed choice the service builds from a tool-offering answer."""
    framer = ChatChoiceFramer(False, ToolPlan("auto", [], schemas))
    message = chat_choice(0, text, "stop", framer, None)["message"]
    return message["content"], message.get("tool_calls", [])


def test_non_streamed_call_is_typed_by_the_schema():
    content, calls = non_streamed_answer(ONE_CALL, SCHEMAS)
    assert content == "Let me check.\n"
    assert len(calls) == 1 and calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "city": "São Paulo",
        "days": 3,
        "scale": 1.5,
        "hourly": True,
        "options": {"units": "metric"},
        "tags": ["a", 1],
        "note": "line one\nline two",
    }


def test_only_calls_give_null_content_and_parallel_calls_are_indexed():
    content, calls = non_streamed_answer(TWO_CALLS.removeprefix("Let me check.\n"), SCHEMAS)
    assert content is None
    assert [c["function"]["name"] for c in calls] == ["get_weather", "noop"]
    assert json.loads(calls[1]["function"]["arguments"]) == {}
    assert len({c["id"] for c in calls}) == 2


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_streamed_pieces_rebuild_the_same_calls(step):
    parser = XmlToolCallParser(SCHEMAS)
    pieces = []
    for start in range(0, len(TWO_CALLS), step):
        pieces += parser.feed(TWO_CALLS[start : start + step])
    pieces += parser.flush()
    content = "".join(p.get("content", "") for p in pieces)
    assert content == "Let me check.\n"
    calls: dict[int, dict] = {}
    for piece in pieces:
        for delta in piece.get("tool_calls", []):
            if delta["index"] not in calls:  # OpenAI framing: the first delta names the call
                assert delta["id"].startswith("call_") and delta["type"] == "function"
                assert delta["function"]["arguments"] == ""
                calls[delta["index"]] = {"name": delta["function"]["name"], "arguments": ""}
            else:
                assert set(delta) == {"index", "function"} and set(delta["function"]) == {"arguments"}
            calls[delta["index"]]["arguments"] += delta["function"]["arguments"]
    _, whole = non_streamed_answer(TWO_CALLS, SCHEMAS)
    assert [c["name"] for c in calls.values()] == ["get_weather", "noop"]
    assert [json.loads(c["arguments"]) for c in calls.values()] == [
        json.loads(c["function"]["arguments"]) for c in whole
    ]


def test_text_that_only_looks_like_a_marker_is_content():
    text = "a < b and <tool is not a call; <think later"
    parser = XmlToolCallParser(SCHEMAS)
    pieces = [p for ch in text for p in parser.feed(ch)] + parser.flush()
    assert "".join(p["content"] for p in pieces) == text
    assert non_streamed_answer(text, SCHEMAS) == (text, [])


def test_calls_inside_a_think_block_are_not_calls():
    """vLLM #39056: a call written while thinking must not be executed."""
    thought = "<think>\nmaybe " + ONE_CALL + "\n</think>\n\nThe answer is 4."
    content, calls = non_streamed_answer(thought, SCHEMAS)
    assert calls == [] and content == thought


def test_framer_keeps_calls_in_reasoning_out_of_tool_calls():
    plan = ToolPlan("auto", [{"type": "function", "function": {"name": "get_weather"}}], SCHEMAS)
    reasoning_call = "I could " + ONE_CALL + "</think>\n\nNo call needed."
    choice = chat_choice(0, reasoning_call, "stop", ChatChoiceFramer(True, plan), None)
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"
    assert "<tool_call>" in choice["message"]["reasoning_content"]
    assert choice["message"]["content"] == "No call needed."
    after = chat_choice(0, "hmm</think>\n\n" + ONE_CALL, "stop", ChatChoiceFramer(True, plan), None)
    assert after["finish_reason"] == "tool_calls" and after["message"]["tool_calls"][0]["function"]["name"]


def test_a_cut_off_call_still_has_json_arguments():
    content, calls = non_streamed_answer("<tool_call>\n<function=get_weather>\n<parameter=city>\nPa", SCHEMAS)
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {}


@pytest.mark.parametrize(
    "raw, schema, expected",
    [
        ("42", {"type": "integer"}, 42),
        ("4x", {"type": "integer"}, "4x"),
        ("2", {"type": "number"}, 2),
        ("2.50", {"type": "number"}, 2.5),
        ("false", {"type": "boolean"}, False),
        ("null", {"type": ["integer", "null"]}, None),
        ("null", {"type": "string"}, "null"),
        ("[1, 2]", None, [1, 2]),
        ("free text", None, "free text"),
        ("{'a': (1)}", {"type": "object"}, {"a": 1}),
    ],
)
def test_convert_value(raw, schema, expected):
    assert convert_value(raw, schema) == expected


def test_forced_calls_from_json():
    named = forced_calls('{"city": "Oslo"}', "named", "get_weather")
    assert named[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    required = forced_calls(
        '[{"name": "noop", "parameters": {}}, {"name": "get_weather", "parameters": {}}]', "required", None
    )
    assert [c["function"]["name"] for c in required] == ["noop", "get_weather"]
    assert forced_calls('{"city": "Os', "named", "get_weather") is None


def test_forced_call_schema_limits_names_and_count():
    plan = ToolPlan("required", [], SCHEMAS, None, parallel=False)
    schema = forced_call_schema(plan)
    assert schema["minItems"] == 1 and schema["maxItems"] == 1
    assert [item["properties"]["name"]["const"] for item in schema["items"]["anyOf"]] == [
        "get_weather",
        "noop",
    ]
    assert forced_call_schema(ToolPlan("named", [], SCHEMAS, "noop")) == SCHEMAS["noop"]


def test_named_forced_call_streams_its_arguments():
    plan = ToolPlan("named", [], SCHEMAS, "get_weather")
    framer = ChatChoiceFramer(False, plan, top_logprobs=1)
    logprob = TokenLogprob('{"', -0.5, 1, [('{"', -0.5)])
    first = framer.feed('{"', [logprob], None)
    rest = framer.feed('city": "x"}', None, "stop")
    call = first[0].delta["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"'} and call["id"].startswith("call_")
    assert first[0].logprobs[0]["top_logprobs"][0]["token"] == '{"'
    assert rest[0].delta["tool_calls"][0]["function"]["arguments"] == 'city": "x"}'
    assert rest[-1].finish_reason == "tool_calls"


def test_required_calls_stream_as_each_completes():
    plan = ToolPlan("required", [], SCHEMAS, None)
    framer = ChatChoiceFramer(False, plan)
    assert framer.feed('[{"name": "noop", "parameters": {"a": "}{\\""', None, None) == []
    first = framer.feed('}}, {"name": "get_weather", ', None, None)
    second = framer.feed('"parameters": {"city": "Oslo"}}]', None, "stop")
    call = first[0].delta["tool_calls"][0]
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "noop", "arguments": '{"a": "}{\\""}'}
    assert second[0].delta["tool_calls"][0]["index"] == 1
    assert json.loads(second[0].delta["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert second[-1].finish_reason == "tool_calls"


def test_required_calls_cut_by_max_tokens_keep_the_completed_ones():
    plan = ToolPlan("required", [], SCHEMAS, None)
    text = '[{"name": "noop", "parameters": {}}, {"name": "get_weather", "parameters": {"ci'
    choice = chat_choice(0, text, "length", ChatChoiceFramer(False, plan), None)
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["noop"]
    nothing = chat_choice(0, '[{"name": "no', "length", ChatChoiceFramer(False, plan), None)
    assert "tool_calls" not in nothing["message"] and nothing["message"]["content"] == ""


def test_template_messages_carry_tool_calls_with_mapping_arguments():
    messages = [
        ChatMessage("user", ["weather?"]),
        ChatMessage(
            "assistant",
            [""],
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}
            ],
        ),
        ChatMessage("tool", ["sunny"], tool_call_id="call_1"),
    ]
    rendered = template_messages(messages)
    assert rendered[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1}  # Qwen3.5 iterates |items
    assert rendered[2]["tool_call_id"] == "call_1" and rendered[2]["role"] == "tool"
    assert messages[1].tool_calls[0]["function"]["arguments"] == '{"a": 1}'  # the input is not mutated


def test_prompt_builder_passes_tools_and_calls_to_the_chat_template(demo_cache):
    """Qwen3.5's template reads `tools` and iterates each call's `arguments|items`; a template that
    does the same shows both arrive in that shape."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from deployments.engines.base import GenerationRequest, SamplingParams
    from deployments.engines.prompting import PromptBuilder

    tokenizer = AutoTokenizer.from_pretrained(demo_cache / "demo-models" / "qwen3.5-0.8b")
    tokenizer.chat_template = (
        "{%- for tool in tools or [] -%}[tool {{ tool.function.name }}]{%- endfor -%}"
        "{%- for m in messages -%}{%- for call in m.tool_calls or [] -%}"
        "<function={{ call.function.name }}>{%- for k, v in call.function.arguments|items -%}"
        "<parameter={{ k }}>{{ v }}</parameter>{%- endfor -%}{%- endfor -%}"
        "{%- if m.role == 'tool' -%}<tool_response id={{ m.tool_call_id }}>{%- endif -%}{%- endfor -%}"
    )
    builder = PromptBuilder(tokenizer, SimpleNamespace(merge_size=2), max_images=1, max_decoded_pixels=10)
    request = GenerationRequest(
        "r",
        SamplingParams(),
        messages=[
            ChatMessage("user", ["weather?"]),
            ChatMessage(
                "assistant",
                [""],
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            ),
            ChatMessage("tool", ["sunny"], tool_call_id="c1"),
        ],
        tools=[{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
    )
    prompt = builder.build(request, thinking=False)
    text = tokenizer.decode(prompt.input_ids)
    assert text == "[tool get]<function=get><parameter=city>Oslo</parameter><tool_response id=c1>"
