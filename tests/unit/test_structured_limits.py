"""The ingress's size budget for structured-output specs (serving.limits.max_schema_*)."""

import json

import pytest

from cluster.config import LimitsConfig
from deployments.engines.base import StructuredOutput
from deployments.openai.protocol import OpenAIError
from deployments.openai.structured import SchemaSize, SpecValidator, schema_size

pytestmark = pytest.mark.unit


def test_schema_size_counts_properties_and_values_wherever_they_are():
    schema = {
        "type": "object",
        "properties": {
            # Property names that spell keywords are names, not keywords.
            "enum": {"type": "string", "enum": ["a", "b"]},
            "const": {"const": 3},
            "properties": {"type": "object", "properties": {"x": {}, "y": {}}},
        },
        "$defs": {"colour": {"enum": ["red", "green", "blue"]}},
        "anyOf": [{"properties": {"z": {"const": {"enum": [1, 2, 3]}}}}],  # a const's value is data
    }
    names = len("enum" + "const" + "properties" + "x" + "y" + "colour" + "z")
    values = len("a" + "b" + "3" + "red" + "green" + "blue" + '{"enum": [1, 2, 3]}')
    assert schema_size(schema) == SchemaSize(properties=3 + 2 + 1, values=2 + 1 + 3 + 1, chars=names + values)


def test_validator_accepts_specs_at_the_limits_and_names_the_setting_past_them():
    limits = LimitsConfig(max_schema_properties=3, max_schema_enum_values=4, max_structured_chars=1000)
    validator = SpecValidator(limits)

    def spec(schema):
        return StructuredOutput("json_schema", json.dumps(schema))

    validator.check(
        spec({"type": "object", "properties": {"a": {}, "b": {}, "c": {"enum": [1, 2, 3, 4]}}}), "p"
    )
    validator.check(StructuredOutput("choice", json.dumps(["a", "b", "c", "d"])), "p")
    # Descriptions and other annotations are not counted: only what becomes grammar alternatives.
    validator.check(spec({"type": "string", "description": "d" * 5000, "enum": ["a" * 1000]}), "p")
    cases = [
        (spec({"type": "object", "properties": {k: {} for k in "abcd"}}), "max_schema_properties"),
        (spec({"enum": [1, 2, 3, 4, 5]}), "max_schema_enum_values"),
        (StructuredOutput("choice", json.dumps(list("abcde"))), "max_schema_enum_values"),
        (StructuredOutput("grammar", 'root ::= "' + "a" * 1000 + '"'), "max_structured_chars"),
        (spec({"enum": ["a" * 600, "b" * 401]}), "max_structured_chars"),
        (spec({"type": "object", "properties": {"a" * 1001: {}}}), "max_structured_chars"),
    ]
    for too_big, setting in cases:
        with pytest.raises(OpenAIError, match=setting) as caught:
            validator.check(too_big, "response_format.json_schema.schema")
        assert caught.value.status_code == 400
        assert caught.value.param == "response_format.json_schema.schema"
