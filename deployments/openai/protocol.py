"""OpenAI request models and the error body, validated strictly with messages that name the field."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class OpenAIError(Exception):
    """An error answered with an OpenAI-style body: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type or _default_type(status_code)
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def _default_type(status_code: int) -> str:
    return {
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
        503: "service_unavailable_error",
        504: "timeout_error",
    }.get(status_code, "invalid_request_error" if status_code < 500 else "server_error")


class _Request(BaseModel):
    # Unknown parameters are rejected, as OpenAI does, so a misspelt option is not silently ignored.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ImageURL(_Request):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImagePart(_Request):
    type: Literal["image_url"]
    image_url: ImageURL


class FunctionCall(_Request):
    name: str = Field(min_length=1)
    arguments: str


class ToolCall(_Request):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None

    @model_validator(mode="after")
    def _content_present(self) -> Message:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if (
            isinstance(self.content, list)
            and self.role != "user"
            and any(isinstance(p, ImagePart) for p in self.content)
        ):
            raise ValueError("images are only accepted in user messages")
        return self


class StreamOptions(_Request):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # OpenAI's padding option; meaningless here, accepted


# ---- structured outputs ------------------------------------------------------------------------
class TextFormat(_Request):
    type: Literal["text"]


class JsonObjectFormat(_Request):
    type: Literal["json_object"]


class JsonSchemaSpec(_Request):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    # Named `schema` on the wire; `schema_` here because `schema` shadows a BaseModel attribute.
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JsonSchemaFormat(_Request):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class StructuredOutputsParams(_Request):
    """vLLM's `structured_outputs` extra: exactly one constraint."""

    json_: dict[str, Any] | None = Field(None, alias="json")
    regex: str | None = Field(None, min_length=1)
    choice: list[str] | None = Field(None, min_length=1)
    grammar: str | None = Field(None, min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputsParams:
        given = [k for k in ("json_", "regex", "choice", "grammar") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of json, regex, choice, grammar")
        return self


# ---- tools -------------------------------------------------------------------------------------
class FunctionDefinition(_Request):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "object") != "object":
            raise ValueError("a function's parameters must be a JSON Schema of type object")
        return value


class Tool(_Request):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Request):
    name: str = Field(min_length=1)


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class ChatTemplateKwargs(_Request):
    enable_thinking: bool | None = None


class _SamplingRequest(_Request):
    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    stop: str | list[str] | None = Field(None, validate_default=True)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    # The configured cap (serving.limits.max_n) is checked by the service; this is the hard bound.
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # token id (as a string, OpenAI's form) -> bias; ids are checked against the vocabulary later
    logit_bias: dict[str, float] | None = None
    # Accepted for compatibility and ignored: they mean nothing to a self-hosted server.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.isdigit():
                raise ValueError(f"logit_bias keys are token ids; {key!r} is not one")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values must be in [-100, 100]; token {key} has {bias}")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops


class _ConstrainedRequest(_SamplingRequest):
    """A request whose answer may be constrained: OpenAI's `response_format`, or vLLM's
    `structured_outputs` extra (both endpoints accept them, as vLLM's do)."""

    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputsParams | None = None

    @model_validator(mode="after")
    def _one_constraint(self) -> _ConstrainedRequest:
        if self.structured_outputs is not None and not isinstance(
            self.response_format, (TextFormat, type(None))
        ):
            raise _invalid("give response_format or structured_outputs, not both", "structured_outputs")
        return self


class ChatCompletionRequest(_ConstrainedRequest):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    chat_template_kwargs: ChatTemplateKwargs | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        # Cross-field checks raise OpenAIError (pydantic lets it through) so `param` names the field.
        if self.top_logprobs and not self.logprobs:
            raise _invalid("top_logprobs needs logprobs: true", "top_logprobs")
        if self.tool_choice is not None and self.tool_choice != "none" and not self.tools:
            raise _invalid("tool_choice needs tools", "tool_choice")
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise _invalid("tool names must be unique", "tools")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise _invalid(
                f"tool_choice names {self.tool_choice.function.name!r}, which is not among the tools "
                f"({', '.join(names)})",
                "tool_choice.function.name",
            )
        forced = self.tool_choice == "required" or isinstance(self.tool_choice, NamedToolChoice)
        if forced and not isinstance(self.response_format, (TextFormat, type(None))):
            raise _invalid("a forced tool call cannot also follow response_format", "response_format")
        return self

    @property
    def token_limit(self) -> int | None:
        """`max_completion_tokens` (the current name) or `max_tokens` (the older one)."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_ConstrainedRequest):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, value: str | list[str]) -> str:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("exactly one prompt per request is supported")
            value = value[0]
        if not value:
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value


def _invalid(message: str, param: str) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="invalid_parameter")


# Union branch labels pydantic puts in error locations; they are not field names.
_UNION_LABELS = ("function-", "TextPart", "ImagePart", "literal[", "NamedToolChoice", "list[")
_FORMAT_TAGS = {"text", "json_object", "json_schema"}


def _param_of(loc: tuple) -> str:
    parts = [str(p) for p in loc if str(p) != "str" and not str(p).startswith(_UNION_LABELS)]
    if len(parts) > 1 and parts[0] == "response_format" and parts[1] in _FORMAT_TAGS:
        del parts[1]  # the discriminated union's tag
    return ".".join(parts)


def load_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object a request body holds, not yet validated.

    Raises:
        OpenAIError: 400 for bad JSON or a body that is not an object.
    """
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OpenAIError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "request body must be a JSON object", code="invalid_json")
    return data


def validate_body(data: dict[str, Any], model_cls: type[BaseModel]) -> Any:
    """A parsed request body validated as `model_cls`.

    Raises:
        OpenAIError: 400 for an invalid field (the field is named in `param`).
    """
    try:
        return model_cls.model_validate(data, strict=True)  # no "yes" -> True coercions
    except ValidationError as error:
        first = error.errors()[0]
        param = _param_of(first["loc"])
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        raise OpenAIError(
            400, f"invalid request: {message}", param=param or None, code="invalid_parameter"
        ) from None
