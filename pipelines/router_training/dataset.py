"""JSONL files the router tools read: labeled rows (train, eval) and plain prompts (calibrate).

One JSON object per line (format in training/router/README.md):
- the request: `"prompt": "..."` or `"messages": [OpenAI messages]`, optionally `"images": N`
  (N placeholder images on the last user turn);
- a label, for labeled files: `"size": "2b"` (the smallest size that answers it well), `"level"`
  (0 trivial .. 3 hard), `"family"` and `"group"` (task family and its group), and/or
  `"correct": {"0.8b": 0, "2b": 1, "4b": 1, "9b": 1}` (per-size correctness, 0..1);
- optional `"split"` (`train`, `heldout`, `heldout_family`, `heldout_phrasing`), `"id"`,
  `"category"` and anything else (ignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.catalog import SIZES, ModelSize, spec_for
from deployments.router.quality import LEVELS
from deployments.router.routing_input import RoutingInput, from_messages, from_prompt, openai_messages_to_chat

SPLITS = ("train", "heldout", "heldout_family", "heldout_phrasing")


class DatasetError(ValueError):
    """A JSONL row the router tools cannot use; the message names the file and line."""


@dataclass(frozen=True)
class LabeledRow:
    """One row of a JSONL file.

    Attributes:
        request: what the scorers see.
        size: the labeled size, if the row has one.
        correct: per-size correctness in [0, 1], if the row has it.
        split: one of `SPLITS` when the file says so.
        category: the row's category, for reports.
        line: 1-based line number in the file.
        family: the task family, if labeled.
        group: the task group (a key of the quality table), if labeled.
        level: the difficulty level 0..3, if labeled.
        id: the row's id (the label loop matches references by it).
        phrasing: the template the row was generated from (training weighs each phrasing equally).
    """

    request: RoutingInput
    size: ModelSize | None = None
    correct: dict[ModelSize, float] | None = None
    split: str | None = None
    category: str | None = None
    line: int = 0
    family: str | None = None
    group: str | None = None
    level: int | None = None
    id: str | None = None
    phrasing: str | None = None

    @property
    def heldout(self) -> bool:
        """Whether the row is held out of training (any `heldout*` split)."""
        return self.split is not None and self.split.startswith("heldout")

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
        handle = path.open("rb")  # decoded line by line, so a bad byte is reported with its line
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read: {error.strerror or error}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DatasetError(
                    f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start})"
                ) from None
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
    if split is not None and split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(SPLITS)}")
    level = obj.get("level")
    if level is not None and (isinstance(level, bool) or level not in range(LEVELS)):
        raise ValueError(f"`level` must be an integer 0..{LEVELS - 1}")
    size = _size(obj["size"]) if obj.get("size") is not None else None
    if size is None and level is not None:
        size = SIZES[level]
    return LabeledRow(
        request=parse_request(obj),
        size=size,
        correct=_correct(obj["correct"]) if obj.get("correct") is not None else None,
        split=split,
        category=str(obj["category"]) if obj.get("category") is not None else None,
        line=line,
        family=str(obj["family"]) if obj.get("family") is not None else None,
        group=str(obj["group"]) if obj.get("group") is not None else None,
        level=level,
        id=str(obj["id"]) if obj.get("id") is not None else None,
        phrasing=str(obj["phrasing"]) if obj.get("phrasing") is not None else None,
    )


def load_rows(path: str | Path, *, require_label: bool = False, split: str | None = None) -> list[LabeledRow]:
    """Read every row of a JSONL file.

    Args:
        path: the file.
        require_label: fail on a row with neither `size` nor `correct`.
        split: keep only rows of this split; `heldout` keeps every `heldout*` split; None keeps all.

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
        if split is None or row.split == split or (split == "heldout" and row.heldout):
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows" + (f" in split {split!r}" if split else ""))
    return rows
