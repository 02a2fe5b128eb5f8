"""Whether two answers to the same request agree, for answers that can be checked mechanically: two
sizes' (shadow labels) or two samples of one size (escalation on disagreement).

The kind of check follows the reference answer (the largest size's): JSON that parses is compared as
values; a lone multiple-choice letter as a letter; an answer with a final number (`#### 42`,
`\\boxed{42}`, or a short answer ending in one) as a number within a relative tolerance; any other
short answer (a few words) by normalised exact match. Longer free text is not verifiable here: a
judge size may be asked instead (`router.shadow.judge_size`), else the pair stays unlabelled.
"""

from __future__ import annotations

import json
import math
import re
from typing import Literal

# Qwen3's end of thinking (deployments.openai.reasoning.THINK_END; not imported: openai imports router).
THINK_END = "</think>"

Kind = Literal["json", "choice", "numeric", "exact", "none"]

SHORT_ANSWER_WORDS = 8
NUMERIC_REL_TOL = 1e-6
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?[.):]?$")
_CHOICE_PHRASE = re.compile(r"\banswer is:?\s*\(?([A-E])\)?", re.IGNORECASE)
_MARKED_NUMBER = re.compile(r"(?:####|\\boxed\{)\s*([-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?)")
_NUMBER = re.compile(r"[-+]?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def answer_part(text: str) -> str:
    """The answer after any thinking block, stripped."""
    if THINK_END in text:
        text = text.split(THINK_END, 1)[1]
    return text.strip()


def _json_value(text: str):
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    if not body or body[0] not in "[{":
        raise ValueError("not a JSON object or array")
    return json.loads(body)


def _choice(text: str) -> str | None:
    match = _CHOICE.match(text) or _CHOICE_PHRASE.search(text)
    return match.group(1).upper() if match else None


def _number(text: str) -> float | None:
    marked = _MARKED_NUMBER.search(text)
    if marked:
        raw = marked.group(1)
    elif len(text.split()) <= SHORT_ANSWER_WORDS and (found := _NUMBER.findall(text)):
        raw = found[-1]
    else:
        return None
    try:
        value = float(raw.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _normalised(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!")


def verifiable_kind(reference: str) -> Kind:
    """How an answer can be checked against `reference` (the reference's own answer part)."""
    text = answer_part(reference)
    try:
        _json_value(text)
        return "json"
    except ValueError:
        pass
    if _choice(text) is not None:
        return "choice"
    if _number(text) is not None:
        return "numeric"
    if text and len(text.split()) <= SHORT_ANSWER_WORDS:
        return "exact"
    return "none"


def agree(kind: Kind, answer: str, reference: str) -> bool | None:
    """Whether `answer` agrees with `reference` under `kind`; None for kind `none`."""
    a, r = answer_part(answer), answer_part(reference)
    if kind == "json":
        try:
            return _json_value(a) == _json_value(r)
        except ValueError:
            return False
    if kind == "choice":
        return _choice(a) is not None and _choice(a) == _choice(r)
    if kind == "numeric":
        x, y = _number(a), _number(r)
        return x is not None and y is not None and math.isclose(x, y, rel_tol=NUMERIC_REL_TOL, abs_tol=1e-9)
    if kind == "exact":
        return _normalised(a) == _normalised(r)
    return None


JUDGE_PROMPT = (
    "Two answers to the same request follow. Reply with one word: YES if they say the same thing "
    "(same final answer or same substance), NO otherwise.\n\nAnswer 1:\n{a}\n\nAnswer 2:\n{b}\n"
)


def judge_prompt(answer: str, reference: str, limit_chars: int = 2000) -> str:
    """The question put to the judge size."""
    return JUDGE_PROMPT.format(a=answer_part(answer)[:limit_chars], b=answer_part(reference)[:limit_chars])


def judge_verdict(reply: str) -> bool | None:
    """YES -> True, NO -> False, anything else None."""
    word = answer_part(reply).strip().split()[:1]
    token = word[0].strip(".,!").upper() if word else ""
    return {"YES": True, "NO": False}.get(token)
