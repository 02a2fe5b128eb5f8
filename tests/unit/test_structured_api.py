"""Structured outputs, forced tool calls, `n`, logprobs and logit_bias through the OpenAI service with the
real demo engines in process (random weights: only the constraint makes the output valid)."""

import json

import jsonschema
import pytest

from cluster.config import parse_config
from tests.support.engines import demo_model_entries
from tests.support.openai_shapes import (
    assemble_tool_calls,
    check_chat_chunks,
    check_chat_completion,
    check_completion,
    sse_payloads,
)
from tests.unit.test_openai_service import run_service

pytestmark = pytest.mark.unit

SMALL, THINKER = "qwen3.5-0.8b", "qwen3.5-4b"  # the demo 4b thinks by default

# Strings and integers are bounded so a random-weight model closes them well within max_tokens (an
# unbounded zip once ran to 66 digits and cut the object off at max_tokens).
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user"]},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 6},
                "zip": {"type": "integer", "minimum": 0, "maximum": 99999},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "address"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 10},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "unit": {"enum": ["c", "f"]},
                },
                "required": ["city", "days"],
                "additionalProperties": False,
            },
        },
    },
    {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}},
]
SCHEMA_BY_NAME = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def config(demo_cache):
    # Engines load in executor threads at once; importing transformers' lazy names here first avoids
    # its import race ("cannot import name 'AutoImageProcessor'") seen when two threads import it.
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen3_5ForConditionalGeneration  # noqa: F401

    config = parse_config(
        {
            "models": demo_model_entries(("0.8b", "4b")),
            "router": {"enabled": True, "scorer": "features"},
            "serving": {"default_model": SMALL, "limits": {"max_n": 4}},
        }
    )
    config.cache_dir = demo_cache
    return config


def chat(model=SMALL, content="hi", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 120, **extra}


def same_text(tokens, text):
    """Tokens join to the text, except where a token holds part of a UTF-8 character: its text is
    then U+FFFD, as OpenAI and vLLM report it."""
    joined = "".join(tokens)
    return joined == text or ("\ufffd" in joined and len(joined) >= len(text))


def schema_format(schema, strict=True):
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": strict}}


def test_json_schema_output_parses_and_validates(config):
    async def body(http):
        plain = await http.post("/v1/chat/completions", json=chat(response_format=schema_format(PERSON), n=3))
        thinker = await http.post(
            "/v1/chat/completions", json=chat(THINKER, response_format=schema_format(PERSON))
        )
        streamed = await http.post(
            "/v1/chat/completions", json=chat(response_format=schema_format(PERSON), stream=True)
        )
        obj = await http.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"}))
        choice = await http.post(
            "/v1/chat/completions", json=chat(structured_outputs={"choice": ["yes", "no"]})
        )
        regex = await http.post(
            "/v1/chat/completions", json=chat(structured_outputs={"regex": "[0-9]{3}-[a-z]{2}"})
        )
        return plain, thinker, streamed, obj, choice, regex

    plain, thinker, streamed, obj, choice, regex = run_service(config, body)
    for response in (plain, thinker):
        assert response.status_code == 200, response.text
        payload = response.json()
        check_chat_completion(payload)
        assert payload["routing"]["signals"] == {"strict_schema": True, "structured": True}
        for item in payload["choices"]:
            assert item["finish_reason"] == "stop", item
            assert "reasoning_content" not in item["message"]  # constrained output is never thinking
            jsonschema.validate(json.loads(item["message"]["content"]), PERSON)
    assert [c["index"] for c in plain.json()["choices"]] == [0, 1, 2]

    chunks = sse_payloads(streamed.text)
    check_chat_chunks(chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(text), PERSON)

    obj_choice = obj.json()["choices"][0]
    if obj_choice["finish_reason"] == "stop":  # an unbounded object may run out of tokens; it says so
        assert isinstance(json.loads(obj_choice["message"]["content"]), dict)
    else:
        assert obj_choice["finish_reason"] == "length"
    assert choice.json()["choices"][0]["message"]["content"] in ("yes", "no")
    assert regex.json()["choices"][0]["message"]["content"][3] == "-"


@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_calls_are_valid_calls(config, stream):
    named = {"type": "function", "function": {"name": "get_weather"}}

    async def body(http):
        results = []
        for choice, model in (("required", SMALL), (named, THINKER)):
            results.append(
                await http.post(
                    "/v1/chat/completions",
                    json=chat(
                        model, tools=TOOLS, tool_choice=choice, n=2, stream=stream, parallel_tool_calls=False
                    ),
                )
            )
        return results

    for response, expect_name in zip(run_service(config, body), (None, "get_weather"), strict=True):
        assert response.status_code == 200, response.text
        if stream:
            chunks = sse_payloads(response.text)
            check_chat_chunks(chunks)
            per_choice = [assemble_tool_calls(chunks, i) for i in (0, 1)]
            finishes = [
                c["choices"][0]["finish_reason"]
                for c in chunks
                if c["choices"] and c["choices"][0]["finish_reason"]
            ]
            assert finishes == ["tool_calls", "tool_calls"]
        else:
            payload = response.json()
            check_chat_completion(payload)
            assert payload["routing"]["signals"]["tools"] == 2
            assert all(
                c["finish_reason"] == "tool_calls" and c["message"]["content"] is None
                for c in payload["choices"]
            )
            per_choice = [
                [
                    {"name": t["function"]["name"], "arguments": t["function"]["arguments"]}
                    for t in c["message"]["tool_calls"]
                ]
                for c in payload["choices"]
            ]
        for calls in per_choice:
            assert len(calls) == 1  # parallel_tool_calls: false
            assert expect_name in (None, calls[0]["name"])
            jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMA_BY_NAME[calls[0]["name"]])


def test_tool_history_renders_and_auto_tool_choice_answers(config):
    history = [
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]

    async def body(http):
        return await http.post(
            "/v1/chat/completions",
            json={"model": SMALL, "messages": history, "tools": TOOLS, "max_tokens": 5},
        )

    response = run_service(config, body)
    assert response.status_code == 200, response.text
    check_chat_completion(response.json())
    assert response.json()["routing"]["signals"]["tool_choice"] == "auto"


@pytest.mark.parametrize(
    "change, param",
    [
        ({"response_format": schema_format({"type": "foo"})}, "response_format.json_schema.schema"),
        ({"response_format": schema_format({"type": 5})}, "response_format.json_schema.schema"),
        (
            {"response_format": schema_format({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})},
            "response_format.json_schema.schema",
        ),
        ({"response_format": schema_format({"$ref": "#/nowhere"})}, "response_format.json_schema.schema"),
        ({"structured_outputs": {"regex": "(unclosed"}}, "structured_outputs.regex"),
        # Past serving.limits (OpenAI's structured-output limits): refused before any compile.
        (
            {"response_format": schema_format({"enum": list(range(1001))})},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": schema_format({"anyOf": [{"const": i} for i in range(1001)]})},
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": schema_format(
                    {"type": "object", "properties": {f"k{i}": {} for i in range(5001)}}
                )
            },
            "response_format.json_schema.schema",
        ),
        ({"structured_outputs": {"choice": [str(i) for i in range(1001)]}}, "structured_outputs.choice"),
        ({"structured_outputs": {"regex": "a" * 120_001}}, "structured_outputs.regex"),
        ({"structured_outputs": {"grammar": "root ::= missing_rule"}}, "structured_outputs.grammar"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"a": {"type": "wat"}}},
                        },
                    }
                ]
            },
            "tools[0].function.parameters",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"logit_bias": {"10000000": 5}}, "logit_bias"),
        ({"logit_bias": {"3": 100.5}}, "logit_bias"),
        ({"n": 5}, "n"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "call_x", "content": "r"},
                ]
            },
            "messages[1].tool_call_id",
        ),
    ],
)
def test_bad_requests_are_400_before_any_model_work(config, change, param):
    calls = []

    class Recording:
        async def generate(self, request):  # pragma: no cover - reaching it fails the test
            calls.append(request)

        def stream(self, request):  # pragma: no cover
            calls.append(request)

    async def body(http):
        return await http.post("/v1/chat/completions", json={**chat(), **change})

    response = run_service(config, body, replace={"0.8b": Recording()})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert calls == []


def test_logprobs_n_and_logit_bias(config):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.models[0].resolved_checkpoint(config.cache_dir))
    favoured = 100
    favoured_text = tokenizer.decode([favoured])

    async def body(http):
        chat_plain = await http.post(
            "/v1/chat/completions", json=chat(max_tokens=4, n=3, seed=7, logprobs=True, top_logprobs=3)
        )
        chat_stream = await http.post(
            "/v1/chat/completions",
            json=chat(
                max_tokens=4,
                n=2,
                logprobs=True,
                top_logprobs=2,
                stream=True,
                stream_options={"include_usage": True},
            ),
        )
        text = await http.post(
            "/v1/completions", json={"model": SMALL, "prompt": "Once", "max_tokens": 4, "n": 2, "logprobs": 2}
        )
        text_stream = await http.post(
            "/v1/completions",
            json={"model": SMALL, "prompt": "Once", "max_tokens": 3, "logprobs": 1, "stream": True},
        )
        biased = await http.post(
            "/v1/chat/completions",
            json=chat(max_tokens=3, temperature=0.0, logit_bias={str(favoured): 100}, frequency_penalty=0.0),
        )
        no_logprobs = await http.post("/v1/chat/completions", json=chat(max_tokens=2))
        return chat_plain, chat_stream, text, text_stream, biased, no_logprobs

    chat_plain, chat_stream, text, text_stream, biased, no_logprobs = run_service(config, body)
    payload = chat_plain.json()
    check_chat_completion(payload)
    assert [c["index"] for c in payload["choices"]] == [0, 1, 2]
    # Completions are summed over the samples (an end-of-turn token counts but has no text).
    assert (
        sum(len(c["logprobs"]["content"]) for c in payload["choices"])
        <= payload["usage"]["completion_tokens"]
        <= 12
    )
    for item in payload["choices"]:
        content = item["logprobs"]["content"]
        assert len(content) == 4 or item["finish_reason"] == "stop"
        assert content and all(len(e["top_logprobs"]) == 3 for e in content)
        assert same_text([e["token"] for e in content], item["message"]["content"])

    chunks = sse_payloads(chat_stream.text)
    check_chat_chunks(chunks)
    entries, texts, finishes = {0: [], 1: []}, {0: "", 1: ""}, {}
    for chunk in chunks:
        for item in chunk["choices"]:
            entries[item["index"]] += (item.get("logprobs") or {}).get("content") or []
            texts[item["index"]] += item["delta"].get("content") or ""
            finishes[item["index"]] = item["finish_reason"] or finishes.get(item["index"])
    for index in (0, 1):  # each token's logprob arrives once, on the chunk that carries its text
        assert same_text([e["token"] for e in entries[index]], texts[index])
        assert len(entries[index]) == 4 or finishes[index] == "stop"
    assert sum(len(v) for v in entries.values()) <= chunks[-1]["usage"]["completion_tokens"] <= 8

    completion = text.json()
    check_completion(completion)
    for item in completion["choices"]:
        logprobs = item["logprobs"]
        # A sampled end-of-text token ends a choice early (random weights); it is listed, with no text.
        assert len(logprobs["tokens"]) == 4 or (
            item["finish_reason"] == "stop" and logprobs["tokens"][-1] == ""
        )
        assert all(len(top) <= 2 for top in logprobs["top_logprobs"])
        assert logprobs["text_offset"][0] == 0 and same_text(logprobs["tokens"], item["text"])
    for chunk in sse_payloads(text_stream.text):
        if chunk["choices"]:
            check_completion(chunk, streamed=True)

    assert biased.json()["choices"][0]["message"]["content"] == favoured_text * 3
    no_lp = no_logprobs.json()
    check_chat_completion(no_lp)
    assert no_lp["choices"][0]["logprobs"] is None and no_lp["choices"][0]["message"]["refusal"] is None
    assert payload["usage"]["prompt_tokens"] == no_lp["usage"]["prompt_tokens"]  # counted once for n=3


def test_auto_routing_weighs_tools_and_schemas(config):
    async def body(http):
        tools = await http.post(
            "/v1/chat/completions", json=chat("auto", tools=TOOLS, tool_choice="required", max_tokens=40)
        )
        schema = await http.post(
            "/v1/chat/completions", json=chat("auto", response_format=schema_format(PERSON), max_tokens=40)
        )
        plain = await http.post("/v1/chat/completions", json=chat("auto", max_tokens=2))
        return tools, schema, plain

    tools, schema, plain = run_service(config, body)
    for response in (tools, schema, plain):
        assert response.status_code == 200, response.text
    assert tools.json()["routing"]["reason"].startswith("quality+tools")
    assert tools.headers["x-qwen-route-reason"].startswith("quality+tools")
    assert schema.json()["routing"]["reason"].startswith("quality+structured")
    assert plain.json()["routing"]["reason"] == "quality"


def test_completions_accept_response_format_and_structured_outputs(config):
    def completion(**extra):
        return {"model": SMALL, "prompt": "Person:", "max_tokens": 120, **extra}

    async def body(http):
        schema = await http.post("/v1/completions", json=completion(response_format=schema_format(PERSON)))
        choice = await http.post(
            "/v1/completions", json=completion(structured_outputs={"choice": ["yes", "no"]})
        )
        both = await http.post(
            "/v1/completions",
            json=completion(response_format={"type": "json_object"}, structured_outputs={"regex": "a+"}),
        )
        bad = await http.post(
            "/v1/completions",
            json=completion(response_format=schema_format({"type": "object", "minProperties": "x"})),
        )
        return schema, choice, both, bad

    schema, choice, both, bad = run_service(config, body)
    assert schema.status_code == 200, schema.text
    jsonschema.validate(json.loads(schema.json()["choices"][0]["text"]), PERSON)
    assert schema.json()["routing"]["signals"] == {"strict_schema": True, "structured": True}
    assert choice.status_code == 200, choice.text
    assert choice.json()["choices"][0]["text"] in ("yes", "no")
    for response, param in ((both, "structured_outputs"), (bad, "response_format.json_schema.schema")):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
