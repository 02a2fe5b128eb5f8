"""The instruction / pasted-material split reads the layouts requests use, and leaves other text whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.router.instruction import (
    AFTER_COLON_MIN_CHARS,
    MATERIAL_MIN_CHARS,
    InstructionSplit,
    split_instruction,
)

pytestmark = pytest.mark.unit

PARAGRAPHS = [
    "The new opening time is 8:30 on weekdays and 10:00 on Saturdays, from the first of next month.",
    "Damage caused by accidents, water or unauthorised repairs is not covered by the warranty at all.",
    "Receipts are required for any expense over 25 euros; meals are reimbursed up to 45 euros a day.",
    "Anyone who disagrees with the decision may appeal in writing within ten days of the notice.",
]
PAGE = "\n\n".join(PARAGRAPHS)


@pytest.mark.parametrize(
    ("text", "instruction", "material"),
    [
        # An ask, then the page it is about.
        (f"Summarise this in 4 bullet points:\n\n{PAGE}", "Summarise this in 4 bullet points:", PAGE),
        # An ask, the page, and a closing question.
        (
            f"Read the policy below:\n\n{PAGE}\n\nWhich rule applies to a late receipt?",
            "Read the policy below:\n\nWhich rule applies to a late receipt?",
            PAGE,
        ),
        # The page's own short last sentence is not a second instruction.
        (
            f"Write a two-sentence summary of the following.\n\n{PAGE}",
            "Write a two-sentence summary of the following.",
            PAGE,
        ),
        # A colon announces even a short paragraph as material.
        (f"Translate into French:\n\n{PARAGRAPHS[0]}", "Translate into French:", PARAGRAPHS[0]),
    ],
)
def test_an_ask_before_its_material(text, instruction, material):
    split = split_instruction(text)
    assert (split.instruction, split.material) == (instruction, material)


def test_page_with_a_heading_then_a_question():
    split = split_instruction(f"Notice: changes to the office hours\n\n{PAGE}\n\nTL;DR?")
    assert split.instruction == "TL;DR?"
    assert split.material.startswith("Notice: changes") and PARAGRAPHS[-1] in split.material


@pytest.mark.parametrize("paragraphs", [PARAGRAPHS, PARAGRAPHS[:1] * 4])
def test_a_page_without_a_heading_then_a_question(paragraphs):
    # The page's first paragraph is a short statement: before a closing question it is page, not ask.
    page = "\n\n".join(paragraphs)
    split = split_instruction(f"{page}\n\nWhen does the new opening time apply?")
    assert split.instruction == "When does the new opening time apply?"
    assert split.material == page


def test_a_first_line_ending_in_a_question_mark_heads_a_page():
    body = " ".join(PARAGRAPHS)
    split = split_instruction(f"From the text below, what is the new opening time?\n{body}")
    assert split.instruction == "From the text below, what is the new opening time?"
    assert split.material == body


def test_a_short_requirements_list_stays_with_its_ask():
    text = "Design a URL shortener.\n\nIt must handle 10k writes per second and keep links for five years."
    assert len(text) < MATERIAL_MIN_CHARS
    assert split_instruction(text).instruction == text
    assert split_instruction(text).material == ""


@pytest.mark.parametrize(
    "ask",
    [
        "Classify whether the following email is spam or not. Output true or false.",
        "Replace all the human names in the paragraph with <anonymized>.",
        "Extract the method used in this abstract.",
    ],
)
def test_an_ask_that_points_at_its_text_splits_off_a_short_one(ask):
    body = "Hello, we assessed the payment structure of your contract and found that you are due an adjustment."
    assert AFTER_COLON_MIN_CHARS <= len(body) < MATERIAL_MIN_CHARS
    split = split_instruction(f"{ask}\n\n{body}")
    assert (split.instruction, split.material) == (ask, body)


def test_an_ask_that_names_a_kind_of_text_to_write_keeps_its_requirements():
    text = "Write a story.\n\nIt should be about a dragon who learns to fly, told by its mother, in 500 words."
    assert split_instruction(text).material == ""


@pytest.mark.parametrize(
    "text",
    [
        # One long paragraph: a long word problem or question.
        " ".join(PARAGRAPHS) + " How many days does an appeal allow, and what does a meal cost at most?",
        # Paragraphs that are all long: a multi-paragraph question with no short ask to split off.
        "\n\n".join([" ".join(PARAGRAPHS * 2)] * 3),
        "",
    ],
)
def test_text_without_an_instruction_layout_is_all_instruction(text):
    split = split_instruction(text)
    assert split.material == ""
    assert split.instruction.split() == text.split()


def test_fenced_code_is_material_and_a_bare_block_is_its_own_instruction():
    block = "```python\ndef f(x):\n    return x[0]\n```"
    split = split_instruction(f"Fix the bug here and explain it:\n{block}")
    assert split.instruction == "Fix the bug here and explain it:"
    assert split.material == block
    assert split_instruction(block).instruction == block


_PIECES = st.sampled_from(
    ["\n\n", "\n", " ", ":", "?", ".", "```", "```python\n", "Summarise this", "TL;DR", "x = 1", "é", "？"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=120)), max_size=12).map("".join))
def test_the_split_loses_and_invents_nothing(text):
    split = split_instruction(text)

    def characters(value: str) -> list[str]:
        return sorted(c for c in value if not c.isspace())

    assert characters(split.instruction + split.material) == characters(text)
    if not split.material:
        assert split.instruction.split() == text.split()


PROBLEM = (
    "Let S be the set of positive integers n for which 1/n has a repeating decimal of period 12. "
    "Find the number of elements of S, and show that no n with a period of 12 divides 10^6 - 1 twice."
)


@pytest.mark.parametrize(
    "text",
    [
        f"Solve the following problem:\n\n{PROBLEM}",
        f"Problem:\n{PROBLEM}",
        f"Solve step by step, then check your answer:\n\n{PROBLEM}\n\nWhat is the answer?",
        f"Answer this riddle:\n\n{PROBLEM}",
        f"{PROBLEM} {PROBLEM} {PROBLEM}\n\nPlease reason step by step, and put your final answer in a box.",
        f"Write a Python function for this:\n\n{PROBLEM}",
    ],
)
def test_an_ask_that_announces_a_task_keeps_the_task_as_instruction(text):
    split = split_instruction(text)
    assert split.material == ""
    assert PROBLEM in split.instruction


def test_a_page_with_a_heading_before_a_plain_question_is_still_material():
    page = "Office hours\n\n" + " ".join(PARAGRAPHS)  # a heading and one paragraph
    split = split_instruction(f"{page}\n\nWhen do we open on Saturdays?")
    assert split.instruction == "When do we open on Saturdays?"
    assert split.material == page


@pytest.mark.parametrize(
    "ask",
    [
        "Make this more concise:",
        "Here is an update from my manager:",
        "Explain this to a ten-year-old:",
        "Answer the question about the passage below:",
    ],
)
def test_an_ask_about_a_text_keeps_the_text_as_material(ask):
    body = " ".join(PARAGRAPHS)
    assert split_instruction(f"{ask}\n\n{body}").material == body


def test_a_page_under_a_task_ask_is_still_material():
    split = split_instruction(f"Answer the question:\n\n{PAGE}\n\nWhen do we open?")
    assert split.material == PAGE


BODY = " ".join(PARAGRAPHS)


@pytest.mark.parametrize(
    "ask", ["Summarise this in 4 bullet points:", "Translate into French:", "Read the notice and list every date in it:"]
)
def test_an_ask_and_its_material_on_one_line_split_as_on_two(ask):
    one_line = split_instruction(f"{ask} {BODY}")
    assert (one_line.instruction, one_line.material) == (ask, BODY)
    two_lines = split_instruction(f"{ask}\n{BODY}")
    assert (two_lines.instruction, two_lines.material) == (one_line.instruction, one_line.material)


@pytest.mark.parametrize(
    "text",
    [
        f"Context: {BODY}",  # a label, not an ask
        f"Note that: {BODY}",
        f"{PARAGRAPHS[0]} The rest: {BODY}",  # the colon ends a later clause, not the first
        f"Solve the following problem: {PROBLEM}",  # a task announced keeps its task
        "Translate into French: Hello, how are you today?",  # too little after the colon
        # A list going on after the colon, and a maths statement, are part of the problem.
        f"Big Dig Mining Company mines three different types of ore: copper, iron, and nickel. {BODY}",
        f"Find the general solution of the system below: $y' = 3y + x$, where {BODY}",
    ],
)
def test_a_one_line_request_without_an_ask_before_its_colon_stays_whole(text):
    split = split_instruction(text)
    assert (split.instruction, split.material) == (text, "")


def test_a_body_with_maths_markup_is_part_of_the_problem():
    system = "$$\n\\begin{aligned}\n\\sqrt{a}+\\sqrt{b} & =8 \\\\\n\\log a+\\log b & =2\n\\end{aligned}\n$$"
    text = (
        "Determine all pairs $(a, b)$ of real numbers that satisfy the following system of equations:"
        f"\n\n{system}\n\nGive your answer(s) as pairs of simplified exact numbers."
    )
    assert split_instruction(text) == InstructionSplit(instruction=text.strip())
    setup = "Let $n$ be a given positive integer. " + "Each lattice point holds a butterfly at first. " * 8
    problem = f"{setup}\n\nHow many butterflies remain at the end?"
    assert split_instruction(problem).material == ""


def test_a_text_with_formulas_under_an_ask_that_points_at_it_is_still_material():
    page = "We study the map $x \\mapsto x^2$ on the unit disc and its fixed points. " * 8
    split = split_instruction(f"Summarize the following article:\n\n{page}")
    assert split.material == page.strip()


def test_a_page_with_prices_is_still_material():
    page = "The blue kettle costs $30 and the red one $15, delivery included. " * 6
    assert split_instruction(f"Summarize this:\n\n{page}").material == page.strip()
