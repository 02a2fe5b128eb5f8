"""The public-results table the router learns difficulty from: one row per question, with the graded
correctness of every model that answered it.

A row is `{"id", "source", "group", "prompt", "correct": {model: 0|1}}`; the file is gzip-compressed
JSONL (training/router/data/public.jsonl.gz) next to `public_models.json`, which names each model's
family and size (the ladders `router eval` compares). Both are written by
training/router/build_public.py from the public repositories listed in
training/router/public_sources.yaml.

Evaluation sets (GSM8K test, MATH, MT-Bench, NQ-open, Dolly) are never trained on: `Exclusion`
drops any row whose normalised question text is one of theirs.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_NON_WORD = re.compile(r"[^0-9a-z]+")
# Question text shorter than this (normalised) is too generic to exclude on ("what is 2+2").
MIN_EXCLUSION_CHARS = 24


def normalise(text: str) -> str:
    """Lower-case ASCII letters and digits with single spaces: what two copies of one question share
    after reformatting (whitespace, punctuation, Unicode forms, capitalisation)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _NON_WORD.sub(" ", folded).strip()


@dataclass(frozen=True)
class PublicRow:
    """One question and who answered it correctly.

    Attributes:
        id: unique within the table (`source:question id`).
        source: the public source it came from (leave-one-source-out holds out by this).
        group: the task group (a key of the quality table: knowledge, maths, coding, tool_use, ...).
        prompt: the question as a user would send it.
        correct: model name to 0/1.
        tools: whether the request offers tools to call (a structural signal of the request).
    """

    id: str
    source: str
    group: str
    prompt: str
    correct: dict[str, int]
    tools: bool = False

    def to_json(self) -> dict:
        """The row as written to the table."""
        row = {"id": self.id, "source": self.source, "group": self.group, "prompt": self.prompt}
        if self.tools:
            row["tools"] = True
        row["correct"] = dict(sorted(self.correct.items()))
        return row

    @classmethod
    def from_json(cls, row: Mapping) -> PublicRow:
        """Read what `to_json` wrote."""
        return cls(
            id=str(row["id"]),
            source=str(row["source"]),
            group=str(row["group"]),
            prompt=str(row["prompt"]),
            correct={str(k): int(v) for k, v in row["correct"].items()},
            tools=bool(row.get("tools", False)),
        )


@dataclass
class BuildReport:
    """What a build kept and skipped, per source and reason (malformed rows never stop a build)."""

    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    excluded: Counter = field(default_factory=Counter)

    def skip(self, source: str, reason: str, count: int = 1) -> None:
        """Count `count` rows of `source` skipped for `reason`."""
        self.skipped[(source, reason)] += count

    def lines(self) -> list[str]:
        """The report as printable lines."""
        out = ["kept rows per source:"]
        out += [f"  {source}: {count}" for source, count in sorted(self.kept.items())]
        out.append("skipped (source, reason): count")
        out += [f"  {s}, {r}: {n}" for (s, r), n in sorted(self.skipped.items())] or ["  none"]
        out.append("dropped as evaluation-set questions (source, set): count")
        out += [f"  {s}, {e}: {n}" for (s, e), n in sorted(self.excluded.items())] or ["  none"]
        return out


class Exclusion:
    """Normalised question texts of the evaluation sets, by set name.

    A row is excluded when its normalised prompt equals an evaluation question or contains one (a
    source may wrap the question in instructions or options).
    """

    def __init__(self, questions: Mapping[str, Iterable[str]]):
        self._by_set: dict[str, set[str]] = {}
        for name, texts in questions.items():
            kept = {normalise(t) for t in texts}
            self._by_set[name] = {t for t in kept if len(t) >= MIN_EXCLUSION_CHARS}

    def sizes(self) -> dict[str, int]:
        """How many distinct questions each set holds."""
        return {name: len(texts) for name, texts in self._by_set.items()}

    def match(self, prompt: str) -> str | None:
        """The evaluation set `prompt` belongs to, or None."""
        text = normalise(prompt)
        for name, texts in self._by_set.items():
            if text in texts:
                return name
        for name, texts in self._by_set.items():
            # Containment only for long enough prompts: every question is >= MIN_EXCLUSION_CHARS.
            if any(question in text for question in texts if len(question) <= len(text)):
                return name
        return None


def save_table(rows: Iterable[PublicRow], path: str | Path) -> Path:
    """Write rows as gzip JSONL (no name or time in the header: the same rows give the same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
        for row in rows:
            out.write((json.dumps(row.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n").encode())
    return path


def load_table(path: str | Path) -> list[PublicRow]:
    """Read a table `save_table` wrote.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the line of a row that is not a table row.
    """
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                rows.append(PublicRow.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"{path}:{number}: not a public-table row ({error})") from None
    return rows


@dataclass(frozen=True)
class ModelInfo:
    """One model of the table: its family and size (billions of parameters)."""

    family: str
    size: float


def load_models(path: str | Path) -> dict[str, ModelInfo]:
    """Read public_models.json: model name to family and size."""
    document = json.loads(Path(path).read_text())
    return {name: ModelInfo(str(v["family"]), float(v["size"])) for name, v in document.items()}


def ladders(models: Mapping[str, ModelInfo], present: Iterable[str]) -> list[tuple[str, str]]:
    """Adjacent (smaller, larger) pairs of each family with two or more sizes among `present`."""
    by_family: dict[str, list[tuple[float, str]]] = {}
    for name in set(present):
        if name in models:
            by_family.setdefault(models[name].family, []).append((models[name].size, name))
    pairs = []
    for family in sorted(by_family):
        members = sorted(by_family[family])
        pairs += [(a[1], b[1]) for a, b in zip(members[:-1], members[1:], strict=True) if a[0] < b[0]]
    return pairs
