"""Real OpenAI-ecosystem clients against the running demo app: the `openai` SDK's structured parsing
and tool helpers, and LangChain's `with_structured_output` and `bind_tools`, streamed and not.

The demo's weights are random, so every valid answer here is the constraint's doing."""

from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.integration

MODEL = "qwen3.5-0.8b"


class Address(BaseModel):
    city: str = Field(max_length=8)
    zip_code: int = Field(ge=0, le=99999)


class Person(BaseModel):
    """Bounded strings keep a random-weight model's answers short."""

    name: str = Field(max_length=10)
    age: int = Field(ge=0, le=130)
    role: Literal["admin", "user"]
    address: Address


class GetWeather(BaseModel):
    """Weather forecast for a city."""

    city: str = Field(max_length=10)
    days: int = Field(ge=1, le=7)


def test_sdk_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=Person,
        max_completion_tokens=200,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, Person)
    assert choice.message.refusal is None

    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=Person,
        max_completion_tokens=200,
    ) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)


def test_sdk_forced_tool_call_streamed_and_not(client):
    tool = openai.pydantic_function_tool(GetWeather)
    named = {"type": "function", "function": {"name": "GetWeather"}}
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[tool],
        tool_choice=named,
        max_completion_tokens=200,
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls" and call.id.startswith("call_")
    assert isinstance(call.function.parsed_arguments, GetWeather)

    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[tool],
        tool_choice="required",
        # One call: with parallel calls the array of calls is unbounded, and random weights may keep
        # adding calls until max_tokens.
        parallel_tool_calls=False,
        max_completion_tokens=200,
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and all(isinstance(c.function.parsed_arguments, GetWeather) for c in calls)


@pytest.fixture
def chat_model(served):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=served.base_url, api_key="unused", model=MODEL, max_tokens=200, max_retries=0, timeout=60
    )


def test_langchain_structured_output(chat_model):
    structured = chat_model.with_structured_output(Person, method="json_schema")
    assert isinstance(structured.invoke("Invent a person."), Person)
    chunks = list(structured.stream("Invent a person."))
    assert chunks and isinstance(chunks[-1], Person)


def test_langchain_bind_tools(chat_model):
    bound = chat_model.bind_tools([GetWeather], tool_choice="GetWeather")
    message = bound.invoke("Weather in Oslo?")
    assert [c["name"] for c in message.tool_calls] == ["GetWeather"]
    GetWeather.model_validate(message.tool_calls[0]["args"])

    whole = None
    for chunk in bound.stream("Weather in Oslo?"):
        whole = chunk if whole is None else whole + chunk
    assert [c["name"] for c in whole.tool_calls] == ["GetWeather"]
    GetWeather.model_validate(whole.tool_calls[0]["args"])
