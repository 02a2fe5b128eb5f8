"""The keyword ablation (training/router/ablate_keywords.py) patches what features.py reads and puts it back."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from deployments.router import features
from deployments.router.features import extract_features
from deployments.router.routing_input import RoutingInput

pytestmark = pytest.mark.unit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training" / "router"))
import ablate_keywords  # noqa: E402

CODE_ASK = "Why is this SQL query slow on a big table?"


def code_of(text: str) -> float:
    return extract_features(RoutingInput(query=text))["code"]


def test_dropping_a_list_changes_the_features_and_is_undone():
    before = code_of(CODE_ASK)
    assert before > 0
    with ablate_keywords.patched({"FAMILY_WORDS:code": {"sql"}}):
        # Without "sql" nothing says the text is about code, so the gated words do not count either.
        assert code_of(CODE_ASK) == 0.0
    assert code_of(CODE_ASK) == before
    assert features._WORD_FAMILY["sql"] == "code"


def test_dropping_a_gated_word_removes_it_from_the_word_table():
    before = code_of(CODE_ASK)
    with ablate_keywords.patched({"GATED_CODE_WORDS": {"query"}}):
        assert "query" not in features._WORD_FAMILY
        assert code_of(CODE_ASK) < before
    assert features._WORD_FAMILY["query"] == "code"


def test_fired_finds_only_entries_that_occur():
    fired = ablate_keywords.fired([CODE_ASK.lower()])
    assert ("FAMILY_WORDS:code", "sql") in fired
    assert ("GATED_CODE_WORDS", "query") in fired
    assert ("FAMILY_WORDS:code", "kotlin") not in fired


def test_cues_stay_under_a_third_of_the_678_keyword_entries_they_were_cut_from():
    # Issue 28: keywords plus cue regexes at most a third of 678. A cue added here has to earn its
    # place with ablate_keywords.py first.
    entries = ablate_keywords.table_entries()
    keywords = sum(len(v) for v in entries.values())
    regexes = sum(isinstance(value, re.Pattern) for value in vars(features).values())
    symbols = len(features._MATH_SYMBOLS) + len(features._CODE_LITERALS)
    assert keywords + regexes + symbols <= 678 // 3
    assert not set(entries["FAMILY_WORDS:code"]) & set(entries["GATED_CODE_WORDS"])
