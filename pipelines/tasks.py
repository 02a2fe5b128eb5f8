"""Batch tasks: prompt templates, the chat messages a row becomes, decoding constraints and output
validation.

Built-in tasks: `describe`, `transcribe` (OCR to Markdown), `summarize`, `classify` (labels from the
config, decoded under a choice of exactly those labels), `extract` (fields from a JSON schema in the
config or `--schema`, decoded under that schema and validated against it) and `custom` (a prompt from
the command line, the config or a manifest row).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cluster.batch_config import TASK_NAMES, TaskSettings
from deployments.engines.base import ChatMessage, ImageInput, StructuredOutput
from pipelines.schema import KIND_IMAGE, KIND_PDF_PAGE, ErrorKind

_TEMPLATES = {
    "describe": "Describe this {subject} in detail: what it shows, its layout and its key content.",
    "transcribe": (
        "Transcribe all text of this {subject} to Markdown. Keep headings, lists and tables as Markdown; "
        "keep the reading order. Output only the Markdown."
    ),
    "summarize": "Summarize this {subject} in three to five sentences.",
    "classify": (
        "Classify this {subject} into exactly one of these labels: {labels}. Answer with the label only."
    ),
    "extract": (
        "Extract information from this {subject} as one JSON object that matches this JSON schema:\n"
        "{schema}\nAnswer with the JSON object only."
    ),
}

_SUBJECTS = {KIND_PDF_PAGE: "document page", KIND_IMAGE: "image"}
_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_CODE_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class TaskConfigError(ValueError):
    """The job's task cannot run as asked (unknown task, custom task without a prompt, ...)."""


@dataclass(frozen=True)
class ValidatedOutput:
    """A model answer after the task's checks.

    Attributes:
        output: the answer text (thinking removed).
        output_json: the structured answer as JSON text (classify, extract), else None.
        error: why the answer does not validate, else None.
    """

    output: str
    output_json: str | None = None
    error: str | None = None

    @property
    def error_kind(self) -> str | None:
        """`invalid_output` when the answer failed validation."""
        return ErrorKind.INVALID_OUTPUT if self.error else None


class TaskCatalog:
    """The prompts and checks of every task for one job.

    Args:
        settings: labels, schema, custom prompt, system prompt and token budgets from the config.
        custom_prompt: the command line's `--prompt`, which takes precedence over the config's.

    Raises:
        TaskConfigError: when `custom_prompt` is empty.
    """

    def __init__(self, settings: TaskSettings, custom_prompt: str | None = None):
        if custom_prompt is not None and not custom_prompt.strip():
            raise TaskConfigError("--prompt must not be empty")
        self.settings = settings
        self.custom_prompt = custom_prompt or settings.custom_prompt

    def check_task(self, task: str) -> None:
        """Fail fast for a task this job cannot run.

        Raises:
            TaskConfigError: for an unknown task, or `custom` without a prompt.
        """
        if task not in TASK_NAMES:
            raise TaskConfigError(f"unknown task {task!r}; valid: {', '.join(TASK_NAMES)}")
        if task == "custom" and not self.custom_prompt:
            raise TaskConfigError("task `custom` needs --prompt (or batch.tasks.custom_prompt in the config)")

    def instruction(self, task: str, kind: str, prompt: str | None = None) -> str:
        """The instruction for one row: the row's own prompt, else the task's template.

        Raises:
            TaskConfigError: for `custom` with no prompt anywhere.
        """
        if prompt:
            return prompt
        if task == "custom":
            if not self.custom_prompt:
                raise TaskConfigError("task `custom` needs a prompt")
            return self.custom_prompt
        subject = _SUBJECTS.get(kind, "document")
        return _TEMPLATES[task].format(
            subject=subject,
            labels=", ".join(self.settings.classify_labels),
            schema=json.dumps(self.settings.extract_schema, sort_keys=True),
        )

    def structured(self, task: str) -> StructuredOutput | None:
        """The constraint `task` decodes under: the labels for `classify`, the schema for `extract`,
        none for the free-text tasks. The engine then only samples tokens that keep the answer valid,
        so validation fails only when the token budget ends the answer early."""
        if task == "classify":
            return StructuredOutput(kind="choice", spec=json.dumps(self.settings.classify_labels))
        if task == "extract":
            return StructuredOutput(
                kind="json_schema", spec=json.dumps(self.settings.extract_schema, sort_keys=True)
            )
        return None

    def max_tokens(self, task: str) -> int:
        """Completion budget of `task`."""
        return self.settings.max_tokens.for_task(task)

    def messages(self, row: dict[str, Any]) -> list[ChatMessage]:
        """The chat a work row becomes: image first (if any), then the instruction, then its text."""
        instruction = self.instruction(row["task"], row["kind"], row["prompt"])
        content: list[str | ImageInput] = []
        if row["image"] is not None:
            content.append(ImageInput(data=row["image"], source=f"{row['source_uri']}#page={row['page']}"))
        text = row["text"]
        if text and row["kind"] == KIND_PDF_PAGE:
            instruction += f"\n\nThe page's text layer (may be incomplete or out of order):\n{text}"
        elif text:
            instruction += f"\n\nDocument:\n{text}"
        content.append(instruction)
        messages = [ChatMessage(role="user", content=content)]
        if self.settings.system_prompt:
            messages.insert(0, ChatMessage(role="system", content=[self.settings.system_prompt]))
        return messages

    def validate(self, task: str, raw_output: str) -> ValidatedOutput:
        """Strip thinking and check the answer against the task (labels for classify, schema for extract)."""
        output = strip_thinking(raw_output)
        if task == "classify":
            return self._validate_label(output)
        if task == "extract":
            return self._validate_json(output)
        return ValidatedOutput(output)

    def _validate_label(self, output: str) -> ValidatedOutput:
        label = match_label(output, self.settings.classify_labels)
        if label is None:
            return ValidatedOutput(
                output, error=f"answer names none of the labels {self.settings.classify_labels}"
            )
        return ValidatedOutput(output, output_json=json.dumps({"label": label}))

    def _validate_json(self, output: str) -> ValidatedOutput:
        from jsonschema import Draft202012Validator

        value = find_json_object(output)
        if value is None:
            return ValidatedOutput(output, error="answer holds no JSON object")
        errors = sorted(Draft202012Validator(self.settings.extract_schema).iter_errors(value), key=str)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "<root>"
            return ValidatedOutput(
                output, error=f"JSON does not match the schema at {where}: {errors[0].message}"
            )
        return ValidatedOutput(output, output_json=json.dumps(value, sort_keys=True, ensure_ascii=False))


def strip_thinking(text: str) -> str:
    """The answer without a leading `<think>...</think>` block (or a dangling one, cut by max_tokens)."""
    text = _THINK_BLOCK.sub("", text, count=1)
    if text.lstrip().startswith("<think>"):
        return ""
    return text.strip()


def match_label(output: str, labels: list[str]) -> str | None:
    """The label an answer names: an exact match (any case, punctuation trimmed), else the only label
    that occurs as a whole word."""
    cleaned = output.strip().strip(".!\"'`*").strip().lower()
    for label in labels:
        if cleaned == label.lower():
            return label
    found = [label for label in labels if re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", cleaned)]
    return found[0] if len(found) == 1 else None


def find_json_object(text: str) -> Any | None:
    """The first JSON object in an answer (inside a code fence or bare), or None."""
    candidates = [m.group(1) for m in _CODE_FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    return None
