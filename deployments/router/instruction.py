"""Which part of a request's text is the ask, and which is material pasted for it to work on.

"Summarise this in four bullet points:" followed by a page is an easy request however long the page
is: what makes a request hard is the work its instruction asks for, not the numbers, commas and
keywords of the page. The split is by layout only, so it works in any language:
- fenced blocks are material;
- a short first paragraph that ends like a sentence is an ask, and what follows it is material (at
  least `MATERIAL_MIN_CHARS` of it, or `AFTER_COLON_MIN_CHARS` after an ask that ends in a colon,
  "Translate this paragraph:", or that points at the text it was given, "Classify the following
  email."), up to a closing question; before a closing question only a first
  paragraph ending in a colon or question mark counts as an ask, since a statement there is more
  often the page's own first paragraph;
- otherwise a short last paragraph is the ask and what comes before it is material ("<page>\n\nTL;DR?"),
  a heading included;
- a first line ending in a colon or question mark counts as a first paragraph, and so does a first
  clause of at least `INLINE_ASK_MIN_WORDS` words ending in a colon with the material after it on
  the same line ("Summarize this in one sentence: The council met on Tuesday ..."), where what
  follows the colon opens a new sentence (a capital letter or a quote, not a list going on in lower
  case: "three types of ore: copper, iron and nickel"), the line holds no inline TeX (`$`: a maths
  statement, whose colon introduces part of the problem), and the split finds material; otherwise
  the line stays whole.
An ask that announces a task rather than a text ("Solve the following problem:", "Problem:", "Answer
this riddle:", "Write a function for this:", or after the task "Please reason step by step, and put
your final answer in a box.") keeps the task as instruction, since the task's own words are its
cues, unless the ask also names a text ("the passage below") or the body looks like a page (a
heading first, `PAGE_MIN_PARAGRAPHS` paragraphs, or `PAGE_MIN_CHARS` of text). That test reads
words, in the languages the keyword families cover; the pointing test reads English words only.
A body with maths markup (TeX, inline or displayed) is part of a problem, its setup, equations or
data, and stays in the instruction, unless the ask points at a text ("Summarize the following
article:"). Text without one of those shapes is all instruction, as a long word problem or a
multi-paragraph essay question is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An instruction paragraph is at most this long; a head or tail paragraph over it is material.
HEAD_MAX_CHARS = 400
TAIL_MAX_CHARS = 300
# Below this much body text nothing is split off: a short requirements list under a one-line ask
# ("Design X.\n\nMust support Y and Z.") belongs to the ask. An ask ending in a colon announces its
# material, so a shorter body counts.
MATERIAL_MIN_CHARS = 300
AFTER_COLON_MIN_CHARS = 80
# A body this long (or of this many paragraphs, or under a heading) is a page whatever the ask says:
# problems and puzzles are shorter.
PAGE_MIN_CHARS = 1500
PAGE_MIN_PARAGRAPHS = 3
HEADING_MAX_CHARS = 100
# "Summarize this:" is an ask; "Note:" or "Context:" labels what follows.
INLINE_ASK_MIN_WORDS = 3

_FENCED_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_ASK_LINE_ENDINGS = (":", "?", "：", "？")
_COLONS = (":", "：")
_OPENING_QUOTES = ('"', "'", "“", "‘", "«", "„")
# The first clause of a one-line request, ending in a colon that is followed by space (not "8:30").
_INLINE_ASK = re.compile(rf"([^\n.!?。！？:：]{{1,{HEAD_MAX_CHARS}}}[:：])\s+(\S.*)", re.DOTALL)
_QUESTION_ENDINGS = ("?", "？")
# A heading ("Minutes of the March meeting") ends without one of these; an ask ends with one.
_SENTENCE_ENDINGS = (".", "!", "?", ":", ")", '"', "。", "！", "？", "：", "»")
# A body's opening line is a heading unless it ends like a clause. Unlike `_SENTENCE_ENDINGS`, a closing
# parenthesis or quote does not make it a sentence ("Travel policy (revised)" is a heading).
_HEADING_ENDINGS = (".", "!", "?", ":", ";", ",", "。", "！", "？", "：")
# An ask that announces a task names it (problem, question, riddle, exercise) or the work of solving
# it (solve, prove, compute, implement); stems, so that inflections count.
_ANNOUNCES_A_TASK = re.compile(
    r"\b(?:problems?|questions?|exercises?|riddles?|puzzles?|tasks?|challenges?|quiz|solve|solving|"
    r"solution|answer|prove|proof|compute|calculate|implement|function|program|algorithm|"
    r"problema|pregunta|ejercicio|resuelve|resolver|probl[eè]me|exercice|r[ée]sou\w*|aufgabe|frage|"
    r"l[öo]se|l[öo]sen|r[äa]tsel|domanda|esercizio|risolvi)\b|问题|题目|解答|問題|解いて|문제",
    re.IGNORECASE,
)
# An ask that names a text to work over keeps its body as material even when it also says "answer".
_NAMES_A_TEXT = re.compile(
    r"\b(?:texts?|pages?|documents?|paragraphs?|passages?|articles?|e-?mails?|letters?|reports?|"
    r"reviews?|essays?|story|stories|transcripts?|notes|minutes|polic(?:y|ies)|contracts?|memos?|"
    r"excerpts?|above|below|texto|texte|dokument\w*|documento|testo)\b|文章|テキスト|文書|文本|本文",
    re.IGNORECASE,
)

# An ask that points at a text it was given ("the following email", "this paragraph", "the article
# below") announces its material as a colon does.
_POINTS_AT_A_TEXT = re.compile(
    r"\b(?:the|this|these|following|given|provided|attached)\s+(?:[\w-]+\s+)?(?:texts?|paragraphs?|"
    r"passages?|articles?|e-?mails?|letters?|reviews?|tweets?|sentences?|messages?|documents?|excerpts?|"
    r"abstracts?|posts?|conversations?|dialogues?|transcripts?|papers?|pages?|reports?|chapters?|sections?)\b",
    re.IGNORECASE,
)

# Maths markup (inline or display TeX) in a body makes it part of a problem: its setup, its system of
# equations, its data ("Determine all pairs (a, b) that satisfy the following system:" + the system).
# Inline maths by pandoc's rule, as features.py reads it: no space just inside either dollar and no
# digit after the closing one, so the prices of a pasted page ("$30 ... $15") are no formula.
_MATHS_MARKUP = re.compile(r"\$(?=\S)[^$\n]{1,200}(?<=\S)\$(?!\d)|\\begin\{|\\frac|\\sqrt")


@dataclass(frozen=True)
class InstructionSplit:
    """A request's text as its instruction and the material it works on.

    Attributes:
        instruction: the ask (the whole text when no material was recognised).
        material: pasted text or code ("" when none), paragraphs joined by blank lines.
    """

    instruction: str
    material: str = ""


def split_instruction(text: str) -> InstructionSplit:
    """Split `text` into its instruction and pasted material (see the module docstring)."""
    fenced: list[str] = []
    if "```" in text:
        rest = _FENCED_BLOCK.sub("\n\n", text)
        # A request that is nothing but a code block asks through the block itself.
        if rest.strip():
            fenced = _FENCED_BLOCK.findall(text)
            text = rest
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if len(paragraphs) == 1:
        first_line, newline, rest = paragraphs[0].partition("\n")
        if newline and len(first_line) <= HEAD_MAX_CHARS and first_line.rstrip().endswith(_ASK_LINE_ENDINGS):
            paragraphs = [first_line.strip(), rest.strip()]
        elif (inline := _inline_ask(paragraphs[0])) is not None:
            instruction, material = _split_paragraphs(list(inline))
            if material:
                return _with_fenced(instruction, material, fenced)
    instruction, material = _split_paragraphs(paragraphs)
    return _with_fenced(instruction, material, fenced)


def _inline_ask(line: str) -> tuple[str, str] | None:
    """(ask, rest) when `line` opens with an ask ending in a colon and its material follows on the
    same line (see the module docstring), else None."""
    if "$" in line:
        return None
    match = _INLINE_ASK.fullmatch(line)
    if match is None or len(match[1].split()) < INLINE_ASK_MIN_WORDS:
        return None
    rest = match[2].strip()
    if not (rest[0].isupper() or rest[0] in _OPENING_QUOTES):
        return None
    return match[1], rest


def _split_paragraphs(paragraphs: list[str]) -> tuple[str, str]:
    """(instruction, material) of the text's paragraphs; material "" when too little is split off."""
    instruction, body, material_min_chars = _instruction_paragraphs(paragraphs)
    material = "\n\n".join(body)
    if len(material) < material_min_chars or _is_part_of_a_problem(material, instruction):
        instruction, material = paragraphs, ""
    return "\n\n".join(instruction), material


def _is_part_of_a_problem(body: str, ask: list[str]) -> bool:
    """Whether `body` is part of a maths problem (its setup, equations or data) rather than a text to
    work over: it holds maths markup, and the ask does not point at a text ("Summarize the following
    article:" over a paper with formulas keeps the paper as material; "the problem below" is no text)."""
    return bool(_MATHS_MARKUP.search(body)) and not _POINTS_AT_A_TEXT.search("\n".join(ask))


def _with_fenced(instruction: str, material: str, fenced: list[str]) -> InstructionSplit:
    return InstructionSplit(
        instruction=instruction, material="\n\n".join([*fenced, material] if material else fenced)
    )


def _instruction_paragraphs(paragraphs: list[str]) -> tuple[list[str], list[str], int]:
    """(instruction paragraphs, body paragraphs, the least body that counts as material) by the
    layouts the module docstring lists."""
    if len(paragraphs) < 2:
        return paragraphs, [], MATERIAL_MIN_CHARS
    first, last = paragraphs[0], paragraphs[-1]
    closing = len(last) <= TAIL_MAX_CHARS and last.endswith(_QUESTION_ENDINGS)
    # A statement before a closing question is more likely the page's first paragraph than an ask
    # ("<page>\n\nWhen do the buses leave?"); an ask that announces a page ends in a colon or asks.
    head = len(first) <= HEAD_MAX_CHARS and (
        first.endswith(_ASK_LINE_ENDINGS) if closing else first.endswith(_SENTENCE_ENDINGS)
    )
    if head:
        end = len(paragraphs) - 1 if closing and len(paragraphs) > 2 else len(paragraphs)
        if _announces_its_task(first, paragraphs[1:end]):
            return paragraphs, [], MATERIAL_MIN_CHARS
        least = (
            AFTER_COLON_MIN_CHARS
            if first.endswith(_COLONS) or _POINTS_AT_A_TEXT.search(first)
            else MATERIAL_MIN_CHARS
        )
        return [first, *paragraphs[end:]], paragraphs[1:end], least
    if len(last) <= TAIL_MAX_CHARS and not _announces_its_task(last, paragraphs[:-1]):
        return [last], paragraphs[:-1], MATERIAL_MIN_CHARS
    return paragraphs, [], MATERIAL_MIN_CHARS


def _announces_its_task(ask: str, body: list[str]) -> bool:
    """Whether `ask` announces `body` as the task itself rather than a text to work over."""
    if not _ANNOUNCES_A_TASK.search(ask) or _NAMES_A_TEXT.search(ask):
        return False
    if len(body) >= PAGE_MIN_PARAGRAPHS or sum(len(p) for p in body) >= PAGE_MIN_CHARS:
        return False
    opening = body[0] if body else ""
    is_heading = (
        "\n" not in opening and len(opening) <= HEADING_MAX_CHARS and not opening.endswith(_HEADING_ENDINGS)
    )
    return not is_heading
