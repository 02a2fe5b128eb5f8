"""JSONL files the router tools read: labeled rows (train, eval) and plain prompts (calibrate).

One JSON object per line (format in data/README.md):
- the request: `"prompt": "..."` or `"messages": [OpenAI messages]`, optionally `"images": N`
  (N placeholder images on the last user turn);
- a label, for labeled files: `"size": "2b"` (the smallest size that answers it well) and/or
  `"correct": {"0.8b": 0, "2b": 1, "4b": 1, "9b": 1}` (per-size correctness, 0..1);
- optional `"split": "train" | "heldout"`, `"category"`, `"template"` and anything else (ignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.catalog import SIZES, ModelSize, spec_for
from deployments.router.routing_input import RoutingInput, from_messages, from_prompt, openai_messages_to_chat


class DatasetError(ValueError):
    """A JSONL row the router tools cannot use; the message names the file and line."""


@dataclass(frozen=True)
class LabeledRow:
    """One row of a JSONL file.

    Attributes:
        request: what the scorers see.
        size: the labeled size, if the row has one.
        correct: per-size correctness in [0, 1], if the row has it.
        split: `train` or `heldout` when the file says so.
        category: the row's category (seed set), for reports.
        line: 1-based line number in the file.
    """

    request: RoutingInput
    size: ModelSize | None = None
    correct: dict[ModelSize, float] | None = None
    split: str | None = None
    category: str | None = None
    line: int = 0

    @property
    def label(self) -> ModelSize | None:
        """The right size: `size` if given, else the smallest size marked correct (>= 0.5), else None."""
        if self.size is not None:
            return self.size
        if self.correct:
            return next((s for s in SIZES if self.correct.get(s, 0.0) >= 0.5), None)
        return None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line.

    Raises:
        DatasetError: for a missing file, a line that is not JSON, or one that is not an object.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not JSON: {error.msg}") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{number}: each line must be a JSON object")
            yield number, obj


def parse_request(obj: Mapping[str, Any]) -> RoutingInput:
    """The `RoutingInput` of a row's `prompt` or `messages` (plus `images`).

    Raises:
        ValueError: when the row has neither or both, or a bad message.
    """
    images = obj.get("images", 0)
    if not isinstance(images, int) or isinstance(images, bool) or images < 0:
        raise ValueError("`images` must be a non-negative integer count")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt == has_messages:
        raise ValueError("a row needs exactly one of `prompt` or `messages`")
    if has_prompt:
        if not isinstance(obj["prompt"], str):
            raise ValueError("`prompt` must be a string")
        if not images:
            return from_prompt(obj["prompt"])
        return from_messages(openai_messages_to_chat([{"role": "user", "content": obj["prompt"]}], images))
    if not isinstance(obj["messages"], list) or not obj["messages"]:
        raise ValueError("`messages` must be a non-empty list")
    return from_messages(openai_messages_to_chat(obj["messages"], images))


def _size(value: Any) -> ModelSize:
    try:
        return spec_for(str(value)).size
    except KeyError as error:
        raise ValueError(str(error).strip("'\"")) from None


def _correct(value: Any) -> dict[ModelSize, float]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError("`correct` must be an object of size -> 0..1")
    correct: dict[ModelSize, float] = {}
    for key, score in value.items():
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"`correct[{key!r}]` must be a number in [0, 1]")
        correct[_size(key)] = float(score)
    return correct


def parse_row(obj: Mapping[str, Any], line: int = 0) -> LabeledRow:
    """Parse one labeled (or unlabeled) row.

    Raises:
        ValueError: naming the bad field.
    """
    split = obj.get("split")
    if split is not None and split not in ("train", "heldout"):
        raise ValueError("`split` must be `train` or `heldout`")
    return LabeledRow(
        request=parse_request(obj),
        size=_size(obj["size"]) if obj.get("size") is not None else None,
        correct=_correct(obj["correct"]) if obj.get("correct") is not None else None,
        split=split,
        category=str(obj["category"]) if obj.get("category") is not None else None,
        line=line,
    )


def load_rows(path: str | Path, *, require_label: bool = False, split: str | None = None) -> list[LabeledRow]:
    """Read every row of a JSONL file.

    Args:
        path: the file.
        require_label: fail on a row with neither `size` nor `correct`.
        split: keep only rows of this split (`train` or `heldout`); None keeps all.

    Raises:
        DatasetError: naming the file and line of the first bad row.
    """
    rows = []
    for number, obj in iter_jsonl(path):
        try:
            row = parse_row(obj, number)
        except ValueError as error:
            raise DatasetError(f"{path}:{number}: {error}") from None
        if require_label and row.size is None and row.correct is None:
            raise DatasetError(f"{path}:{number}: a labeled row needs `size` or `correct`")
        if split is None or row.split == split:
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows" + (f" in split {split!r}" if split else ""))
    return rows
