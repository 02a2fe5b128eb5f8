"""The engine interface and the request and output types every engine speaks.

These types are plain dataclasses so they pickle cheaply across Ray handles; nothing here imports
torch, transformers or vllm.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class EngineRequestError(Exception):
    """A request the engine cannot serve because of the request itself (an HTTP 4xx).

    Raised from `Engine.chat` before any output is produced; it crosses Ray handles as itself, so
    the ingress can answer with `status_code` and an OpenAI-style error body.
    """

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def __reduce__(self):
        return (type(self), (self.message, self.param, self.code))


class PromptTooLongError(EngineRequestError):
    """Prompt plus `max_tokens` exceeds the model's context limit."""

    def __init__(
        self, message: str, param: str | None = "messages", code: str | None = "context_length_exceeded"
    ):
        super().__init__(message, param, code)


class InvalidImageError(EngineRequestError):
    """An image that cannot be decoded, is too large, or is one too many."""

    def __init__(self, message: str, param: str | None = "messages", code: str | None = "invalid_image"):
        super().__init__(message, param, code)


class EngineOverloadedError(Exception):
    """The engine cannot take more work now (an HTTP 429)."""


class EngineStartError(RuntimeError):
    """The engine cannot start; the message names the missing piece in one line."""


# How a checkpoint given as a local folder starts; anything else may be a Hugging Face id.
LOCAL_PATH_PREFIXES = ("/", "./", "../")


def check_local_checkpoint(model_path: str) -> None:
    """Refuse a checkpoint written as a local path that is no folder on this node: Hugging Face would
    take it for a hub id and fail with a message about repo-id syntax, which hides the cause.

    Raises:
        EngineStartError: naming the path.
    """
    if model_path.startswith(LOCAL_PATH_PREFIXES) and not Path(model_path).is_dir():
        raise EngineStartError(
            f"checkpoint folder {model_path} does not exist on this node (a Hugging Face id has no "
            "leading / or ./)"
        )


class EngineUnavailableError(RuntimeError):
    """The engine cannot serve at all (its loop crashed; an HTTP 503 while Serve restarts it)."""


@dataclass
class ImageInput:
    """An image already fetched by the caller, as encoded bytes (PNG, JPEG, WebP, ...)."""

    data: bytes
    source: str = ""


@dataclass
class ChatMessage:
    """One chat turn. `content` holds text strings and images in their original order.

    An assistant turn may carry `tool_calls` (OpenAI shape: `{"id", "type": "function", "function":
    {"name", "arguments"}}` with `arguments` as a JSON string); a `tool` turn carries the
    `tool_call_id` it answers. The chat template renders both.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: list[str | ImageInput]
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The message's text parts joined, images left out."""
        return "".join(part for part in self.content if isinstance(part, str))

    @property
    def images(self) -> list[ImageInput]:
        """The message's images in order."""
        return [part for part in self.content if isinstance(part, ImageInput)]


StructuredKind = Literal["json_schema", "json_object", "regex", "choice", "grammar"]


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on what the engine may generate; every sampled token keeps the output inside it.

    `kind` and `spec` follow vLLM's structured-output parameters, so both engines share one meaning:
    `json_schema`: `spec` is the schema as JSON text; `json_object`: any JSON object (`spec` None);
    `regex`: a regular expression; `choice`: a JSON list of the allowed strings; `grammar`: an EBNF
    grammar in xgrammar's (GBNF-style) syntax. Frozen and hashable so engines can cache the
    compiled grammar by value.
    """

    kind: StructuredKind
    spec: str | None = None


@dataclass
class SamplingParams:
    """Sampling controls, OpenAI names. `None` takes the model card's default for the mode."""

    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    structured: StructuredOutput | None = None


@dataclass
class GenerationRequest:
    """What an engine generates for: a chat (`messages`) or a raw completion (`prompt`)."""

    request_id: str
    sampling: SamplingParams
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    enable_thinking: bool | None = None
    tools: list[dict[str, Any]] | None = None
    # Whether the caller reads deltas as they come. False: it only joins them, so an engine may
    # produce the answer in one final delta (vLLM's FINAL_ONLY outputs, as `vllm serve` asks for
    # non-streamed requests), which saves a wake-up and a copy per token.
    stream: bool = True
    # Whether the caller reads the answer's per-token log-probabilities (the last delta's `logprobs`:
    # escalation and shadow labels do). False lets an engine skip them: vLLM then computes no
    # log-softmax over the vocabulary per token and no logprob entries, the transformers engine no
    # log-sum-exp in a step where no row reads them. The batch job sets it, and the OpenAI service
    # for every answer but a routed one that escalation or a shadow runner may read.
    answer_logprobs: bool = True

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenerationRequest carries exactly one of messages or prompt")

    @property
    def images(self) -> list[ImageInput]:
        """Every image in the conversation, in order."""
        return [image for message in self.messages or [] for image in message.images]


FinishReason = Literal["stop", "length", "abort"]


@dataclass
class TokenLogprob:
    """One generated token with its log-probability and the most likely alternatives at its step.

    `top` holds up to `SamplingParams.top_logprobs` (token text, log-probability) pairs, most likely
    first, all under the model's raw distribution (as OpenAI and vLLM report them).
    """

    token: str
    logprob: float
    token_id: int
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class GenerationDelta:
    """One streamed piece of output.

    `text` is the new text since the previous delta; token counts are cumulative so the last delta
    carries the usage. `finish_reason` is set on the last delta only; the last delta also carries
    `logprobs` and `tokens`: the log-probability (under the model's raw distribution) and the text of
    every completion token, in order. When the request asked for `sampling.logprobs`, every delta
    carries `token_logprobs` for the tokens generated since the previous delta (streamed logprobs).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: list[float] | None = None
    tokens: list[str] | None = None
    token_logprobs: list[TokenLogprob] | None = None


def merge_deltas(earlier: GenerationDelta, later: GenerationDelta) -> GenerationDelta:
    """One delta for two consecutive ones of a stream: `earlier`'s text and streamed logprobs in
    front of `later`'s; counts, finish reason and the final lists are `later`'s (the newer)."""
    token_logprobs = None
    if earlier.token_logprobs is not None or later.token_logprobs is not None:
        token_logprobs = (earlier.token_logprobs or []) + (later.token_logprobs or [])
    return dataclasses.replace(later, text=earlier.text + later.text, token_logprobs=token_logprobs)


@dataclass
class EngineInfo:
    """What an engine reports about the model it serves."""

    model_path: str
    max_model_len: int
    random_weights: bool
    thinking_default: bool
    device: str


class Engine(abc.ABC):
    """An inference engine for one model.

    Lifecycle: construct (cheap, no weights), optionally `load()`, `await start()` (loads weights
    unless `load` did), any number of concurrent `chat` calls, `await shutdown()`. Engines batch
    concurrent requests themselves.
    """

    def load(self) -> None:  # noqa: B027 - optional hook: engines that load in `start` need none
        """Load the weights now, synchronously, for a caller outside any event loop (a batch actor's
        constructor, so that loading overlaps the reads that fill its first batches). `start` then
        only starts background work. Idempotent; the default does nothing and `start` loads."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model and start background work. Idempotent."""

    @abc.abstractmethod
    def chat(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Generate for one request.

        Yields:
            `GenerationDelta`s in order; the last one has `finish_reason` set and the final token
            counts. A non-streaming caller joins the texts.

        Raises:
            EngineRequestError: (or a subclass) before the first delta, when the request itself is
                bad: the prompt is too long, an image cannot be decoded, too many images.
            EngineOverloadedError: before the first delta, when the engine's queue is full.

        Closing the generator early (client gone) cancels the request and frees its batch slot.
        """

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine cannot serve (background loop dead, device lost)."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Stop taking requests, finish or abort the ones in flight, release the model."""

    @abc.abstractmethod
    def info(self) -> EngineInfo:
        """Static facts about the served model."""
