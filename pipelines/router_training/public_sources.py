"""Readers of public per-question results, one per source format, into `PublicRow` parts.

Each reader takes one model's already-parsed records and returns `{question id: Answer}`; rows it
cannot use are counted in the `BuildReport` by reason, never raised. Grading follows each source's
own rule: MMLU-Pro `pred == answer`; CRUXEval the predicted literal equals the expected one;
LLMRouter's score (0/1, a few fractional, rounded at 0.5); Home Assistant's Good/Bad label.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipelines.router_training.public_table import BuildReport

# MMLU-Pro categories by the quality table's task groups: calculation-heavy sciences read as maths.
MMLU_PRO_GROUPS = {
    "math": "maths",
    "physics": "maths",
    "chemistry": "maths",
    "engineering": "maths",
    "computer science": "coding",
}
LETTERS = "ABCDEFGHIJKLMNOP"
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_ANSWER_FIELD = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)"')
_CODE_HINTS = re.compile(r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bpython\b|\bjava(?:script)?\b|\bSQL\b")
_MATH_HINTS = re.compile(r"\$|\\frac|\d+\s*[-+*/^]\s*\d+|\bhow many\b|\bcalculate\b|\bsolve\b", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """One model's graded answer to one question, with the question as the source states it."""

    prompt: str
    group: str
    correct: int
    tools: bool = False


def mmlu_pro(records: Iterable[Mapping], source: str, report: BuildReport) -> dict[str, Answer]:
    """MMLU-Pro `model_outputs_*.json` records: the question with its lettered options; correct when
    the extracted `pred` equals `answer` (no prediction counts as wrong, as a missed answer is)."""
    out = {}
    for record in records:
        try:
            options = record["options"]
            if isinstance(options, str):
                options = ast.literal_eval(options)
            if not options or len(options) > len(LETTERS):
                report.skip(source, "options missing or too many")
                continue
            lines = [str(record["question"]).strip(), "Options:"]
            lines += [f"{LETTERS[i]}. {str(option).strip()}" for i, option in enumerate(options)]
            answer = str(record["answer"]).strip()
            prediction = record.get("pred")
            group = MMLU_PRO_GROUPS.get(str(record.get("category", "")).lower(), "knowledge")
            out[str(record["question_id"])] = Answer(
                "\n".join(lines), group, int(prediction is not None and str(prediction).strip() == answer)
            )
        except (KeyError, TypeError, ValueError, SyntaxError):
            report.skip(source, "record lacks question, options, answer or id")
    return out


def _literal(text: str) -> object:
    try:
        # Model answers are arbitrary text: Python's warnings about odd literals are noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return " ".join(text.split())


def crux_predicted(output: str) -> str | None:
    """The `answer` a ZeroEval CRUXEval output states in its JSON reply, or None when it has none."""
    text = _FENCE.sub("", output.strip())
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "answer" in parsed:
            return str(parsed["answer"])
    except (ValueError, TypeError):
        pass
    found = _ANSWER_FIELD.search(text)
    if found is None:
        return None
    try:
        return json.loads(f'"{found.group(1)}"')
    except ValueError:
        return found.group(1)


def zeroeval_crux(records: Iterable[Mapping], source: str, report: BuildReport) -> dict[str, Answer]:
    """ZeroEval `result_dirs/crux/*.json` records: correct when the stated answer is the expected
    literal (compared as Python values where both parse, else as whitespace-normalised text)."""
    out = {}
    for record in records:
        try:
            outputs = record["output"]
            output = outputs[0] if isinstance(outputs, list) else outputs
            question = str(record["question"]).strip()
            expected = str(record["answer"])
            key = str(record["id"])
        except (KeyError, TypeError, IndexError):
            report.skip(source, "record lacks question, output, answer or id")
            continue
        predicted = crux_predicted(str(output)) if output else None
        correct = int(predicted is not None and _literal(predicted) == _literal(expected))
        out[key] = Answer(question, "coding", correct)
    return out


def llmrouter_group(question: str) -> str:
    """A task group for an LLMRouter question (the source names only a cluster): coding where code
    shows, maths where arithmetic or a count is asked, else knowledge."""
    if _CODE_HINTS.search(question):
        return "coding"
    if _MATH_HINTS.search(question):
        return "maths"
    return "knowledge"


def llmrouter_dc(
    records: Iterable[Mapping], models: Iterable[str], source: str, report: BuildReport
) -> dict[str, dict[str, Answer]]:
    """LLMRouter `dcrouter_preprocessed/*.json`: `{question, scores: {model: score}}` rows, every
    model in one file; returns model -> question key -> answer. The key is the normalised text, as
    the files carry no id."""
    from pipelines.router_training.public_table import normalise

    wanted = set(models)
    out: dict[str, dict[str, Answer]] = {m: {} for m in wanted}
    for record in records:
        try:
            question = str(record["question"]).strip()
            scores = dict(record["scores"])
        except (KeyError, TypeError, ValueError):
            report.skip(source, "record lacks question or scores")
            continue
        if not question:
            report.skip(source, "empty question")
            continue
        key = normalise(question)[:200]
        group = llmrouter_group(question)
        for model, score in scores.items():
            if model not in wanted:
                continue
            try:
                value = float(score)
            except (TypeError, ValueError):
                report.skip(source, "score not a number")
                continue
            out[model][key] = Answer(question, group, int(value >= 0.5))
    return out


def home_assistant_csv(text: str, model: str, source: str, report: BuildReport) -> dict[str, Answer]:
    """A home-assistant-datasets `report.csv`: rows of `task_id, model_id, text, label`. Runs of one
    task (ids ending `-0`, `-1`, ...) are pooled: correct when at least half were `Good`."""
    runs: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("model_id") != model:
            continue
        task, label, prompt = row.get("task_id") or "", row.get("label"), (row.get("text") or "").strip()
        if not task or label not in ("Good", "Bad") or not prompt:
            report.skip(source, "row lacks task id, text or a Good/Bad label")
            continue
        base = re.sub(r"-\d+$", "", task)
        runs.setdefault(base, []).append(int(label == "Good"))
        texts[base] = prompt
    return {
        task: Answer(texts[task], "tool_use", int(sum(v) * 2 >= len(v)), tools=True)
        for task, v in runs.items()
    }
