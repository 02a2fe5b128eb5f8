"""OpenAI structured-output and tool-choice fields -> the engine's `StructuredOutput`.

- `response_format` (`json_object`, `json_schema`) and vLLM's `structured_outputs` extra (`json`,
  `regex`, `choice`, `grammar`) map one to one onto `StructuredOutput` kinds.
- A forced tool call (`tool_choice: "required"` or a named function) is decoded under a JSON schema,
  as vLLM does: the named function's `parameters` (the output *is* the arguments), or, for
  `required`, an array of `{"name", "parameters"}` items whose names come from the tool list. The
  service turns that JSON into OpenAI `tool_calls` (`deployments.openai.tools`). JSON rather than
  Qwen's XML call format because JSON strings and numbers close on their own, so even a weak model
  finishes a valid call; an XML string parameter only ends when the model spells `</parameter>`.

Every schema is checked before any model work (size against `serving.limits`, meta-schema with
`jsonschema`, then xgrammar's own compile, which rejects unsupported features and `$ref` cycles): a
400 whose `param` names the field.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from cluster.config import LimitsConfig
from deployments.engines.base import EngineRequestError, StructuredOutput
from deployments.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    OpenAIError,
)
from deployments.router.routing_input import STRUCTURE_SIGNALS

ToolMode = Literal["none", "auto", "named", "required"]


@dataclass
class ToolPlan:
    """How a chat request uses its tools.

    Attributes:
        mode: `none` (no tools, or `tool_choice: "none"`), `auto` (the model may call; its Qwen XML
            calls are parsed from the text), `named` / `required` (decoding is forced, see module doc).
        tools: the OpenAI tool dicts (for the chat template), empty when there are none.
        schemas: each function's `parameters` schema by name (types the parsed arguments).
        forced_name: the function a `named` plan calls.
        parallel: whether more than one call may be made (`parallel_tool_calls`).
    """

    mode: ToolMode = "none"
    tools: list[dict[str, Any]] = field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    forced_name: str | None = None
    parallel: bool = True

    @property
    def forced(self) -> bool:
        """Whether decoding is constrained to a call."""
        return self.mode in ("named", "required")


def tool_plan(body: ChatCompletionRequest) -> ToolPlan:
    """The request's tool plan (validated; parameters schemas are checked by `structured_output`)."""
    if not body.tools:
        return ToolPlan()
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools]
    schemas = {tool.function.name: tool.function.parameters or {"type": "object"} for tool in body.tools}
    parallel = body.parallel_tool_calls is not False
    choice = body.tool_choice or "auto"
    if isinstance(choice, NamedToolChoice):
        return ToolPlan("named", tools, schemas, choice.function.name, parallel)
    return ToolPlan(choice, tools, schemas, None, parallel)


def forced_call_schema(plan: ToolPlan) -> dict[str, Any]:
    """The JSON schema a forced call is decoded under."""
    if plan.mode == "named":
        return plan.schemas[plan.forced_name or ""]
    items = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "parameters": schema},
            "required": ["name", "parameters"],
            "additionalProperties": False,
        }
        for name, schema in plan.schemas.items()
    ]
    array: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if not plan.parallel:
        array["maxItems"] = 1
    return array


class SpecValidator:
    """Checks `StructuredOutput`s without a tokenizer, remembering the ones that passed.

    A schema sent with every request (a client's fixed response model, an agent's tool list) is
    checked once: the next request with the same text costs a dict lookup, not a compile.

    Args:
        limits: the size limits a spec must keep (`max_schema_*`, `max_structured_chars`).
        capacity: how many valid specs to remember.
    """

    def __init__(self, limits: LimitsConfig | None = None, capacity: int = 512):
        self.limits = limits or LimitsConfig()
        self.capacity = capacity
        self._valid: OrderedDict[StructuredOutput, None] = OrderedDict()

    def check(self, spec: StructuredOutput, param: str) -> StructuredOutput:
        """`spec`, if it compiles.

        Raises:
            OpenAIError: 400 naming `param` (an invalid or unsupported schema, regex or grammar).
        """
        if spec in self._valid:
            self._valid.move_to_end(spec)
            return spec
        from deployments.engines.structured import validate_structured

        schema = json.loads(spec.spec or "{}") if spec.kind == "json_schema" else None
        self._check_size(spec, param, schema)
        if schema is not None:
            _check_meta_schema(schema, param)
        try:
            validate_structured(spec)
        except EngineRequestError as error:
            code = "invalid_schema" if spec.kind == "json_schema" else "invalid_parameter"
            raise OpenAIError(400, error.message, param=param, code=code) from None
        self._valid[spec] = None
        if len(self._valid) > self.capacity:
            self._valid.popitem(last=False)
        return spec

    def _check_size(self, spec: StructuredOutput, param: str, schema: Any) -> None:
        """Refuse a spec past the configured sizes before anything compiles it (`schema`: a JSON
        schema spec, parsed)."""
        limits = self.limits
        text = spec.spec or ""
        if spec.kind == "json_schema":
            size = schema_size(schema)
        elif spec.kind == "choice":
            choices = json.loads(text or "[]")
            size = SchemaSize(values=len(choices), chars=sum(len(str(choice)) for choice in choices))
        else:  # regex, grammar: their text is what compiles
            size = SchemaSize(chars=len(text))
        kind = spec.kind.replace("_", " ")
        what = {"json_schema": "property names, definition names and enum/const values", "choice": "choices"}
        checks = (
            (size.properties, limits.max_schema_properties, "max_schema_properties", "object properties"),
            (
                size.values,
                limits.max_schema_enum_values,
                "max_schema_enum_values",
                "choices" if spec.kind == "choice" else "enum and const values",
            ),
            (
                size.chars,
                limits.max_structured_chars,
                "max_structured_chars",
                f"characters of {what.get(spec.kind, 'text')}",
            ),
        )
        for count, limit, setting, unit in checks:
            if count > limit:
                raise OpenAIError(
                    400,
                    f"the {kind} holds {count} {unit}; at most {limit} are accepted (serving.limits.{setting})",
                    param=param,
                    code="invalid_schema" if spec.kind == "json_schema" else "invalid_parameter",
                )


@dataclass(frozen=True)
class SchemaSize:
    """How big a structured-output spec is, counted as OpenAI counts its structured-output limits."""

    properties: int = 0  # object properties declared, at every level
    values: int = 0  # enum values and consts (or `choice` options)
    chars: int = 0  # characters of property names, definition names and enum/const values


def schema_size(schema: Any) -> SchemaSize:
    """The `SchemaSize` of a JSON schema, counted anywhere in it (an iterative walk: the body's
    depth limit bounds nesting already, but the walk need not rely on it)."""
    properties = values = chars = 0
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        enum = node.get("enum")
        if isinstance(enum, list):
            values += len(enum)
            chars += sum(_value_chars(value) for value in enum)
        if "const" in node:
            values += 1
            chars += _value_chars(node["const"])
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                if key == "properties":
                    properties += len(value)
                chars += sum(len(name) for name in value)
                pending.extend(value.values())  # names -> subschemas: a name is not a keyword
            elif key not in ("enum", "const"):  # enum and const values are data, not schemas
                pending.append(value)
    return SchemaSize(properties, values, chars)


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _value_chars(value: Any) -> int:
    """Characters an enum or const value counts for: a string's own, any other value's JSON text."""
    return len(value) if isinstance(value, str) else len(json.dumps(value))


def _check_meta_schema(schema: Any, param: str) -> None:
    """Reject a schema that is not a JSON Schema at all (wrong keyword types and such)."""
    import jsonschema

    if not isinstance(schema, dict):
        raise OpenAIError(400, "a JSON Schema must be an object", param=param, code="invalid_schema")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise OpenAIError(
            400, f"invalid JSON Schema at {where}: {error.message}", param=param, code="invalid_schema"
        ) from None


def _schema_text(schema: dict[str, Any]) -> str:
    # Sorted keys: equal schemas give equal text, so the engine's compile cache hits.
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def structured_output(
    body: ChatCompletionRequest | CompletionRequest, plan: ToolPlan, validator: SpecValidator
) -> StructuredOutput | None:
    """The constraint the engine decodes under, or None for free text (a completion's `plan` is
    the empty `ToolPlan()`).

    Raises:
        OpenAIError: 400 naming the field, for a schema, regex or grammar that cannot be compiled.
    """
    for i, tool in enumerate(getattr(body, "tools", None) or []):
        if tool.function.parameters is not None:
            validator.check(
                StructuredOutput("json_schema", _schema_text(tool.function.parameters)),
                f"tools[{i}].function.parameters",
            )
    if plan.forced:
        return StructuredOutput("json_schema", _schema_text(forced_call_schema(plan)))
    fmt = body.response_format
    if isinstance(fmt, JsonObjectFormat):
        return StructuredOutput("json_object")
    if isinstance(fmt, JsonSchemaFormat):
        schema = fmt.json_schema.schema_
        if schema is None:
            return StructuredOutput("json_object")
        return validator.check(
            StructuredOutput("json_schema", _schema_text(schema)), "response_format.json_schema.schema"
        )
    extra = body.structured_outputs
    if extra is None:
        return None
    if extra.json_ is not None:
        return validator.check(
            StructuredOutput("json_schema", _schema_text(extra.json_)), "structured_outputs.json"
        )
    if extra.regex is not None:
        return validator.check(StructuredOutput("regex", extra.regex), "structured_outputs.regex")
    if extra.choice is not None:
        return validator.check(
            StructuredOutput("choice", json.dumps(extra.choice)), "structured_outputs.choice"
        )
    return validator.check(StructuredOutput("grammar", extra.grammar), "structured_outputs.grammar")


def router_structure(signals: dict[str, Any]) -> list[str]:
    """The signals the router weighs (`RoutingInput.structure`) among a request's `routing_signals`."""
    return [signal for signal in STRUCTURE_SIGNALS if signal in signals]


def routing_signals(body: ChatCompletionRequest | CompletionRequest, plan: ToolPlan) -> dict[str, Any]:
    """What the request's structure tells the router (a signal, never an override)."""
    fmt = body.response_format
    strict = isinstance(fmt, JsonSchemaFormat) and bool(fmt.json_schema.strict)
    signals: dict[str, Any] = {}
    if plan.mode != "none":
        signals["tools"] = len(plan.tools)
        signals["tool_choice"] = plan.mode
    if strict:
        signals["strict_schema"] = True
    if isinstance(fmt, (JsonObjectFormat, JsonSchemaFormat)) or body.structured_outputs is not None:
        signals["structured"] = True
    return signals
