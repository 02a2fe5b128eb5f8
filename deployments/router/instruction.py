"""Which part of a request's text is the ask, and which is material pasted for it to work on.

"Summarise this in four bullet points:" followed by a page is an easy request however long the page
is: what makes a request hard is the work its instruction asks for, not the numbers, commas and
keywords of the page. The split is by layout only, so it works in any language:
- fenced blocks are material;
- a short first paragraph that ends like a sentence is an ask, and what follows it is material (at
  least `MATERIAL_MIN_CHARS` of it, or `AFTER_COLON_MIN_CHARS` after an ask that ends in a colon:
  "Translate this paragraph:"), up to a closing question; before a closing question only a first
  paragraph ending in a colon or question mark counts as an ask, since a statement there is more
  often the page's own first paragraph;
- otherwise a short last paragraph is the ask and what comes before it is material ("<page>\n\nTL;DR?"),
  a heading included;
- a first line ending in a colon or question mark counts as a first paragraph.
Text without one of those shapes is all instruction, as a long word problem or a multi-paragraph
essay question is.
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

_FENCED_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_ASK_LINE_ENDINGS = (":", "?", "：", "？")
_COLONS = (":", "：")
_QUESTION_ENDINGS = ("?", "？")
# A heading ("Minutes of the March meeting") ends without one of these; an ask ends with one.
_SENTENCE_ENDINGS = (".", "!", "?", ":", ")", '"', "。", "！", "？", "：", "»")


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
    instruction, body, material_min_chars = _instruction_paragraphs(paragraphs)
    material = "\n\n".join(body)
    if len(material) < material_min_chars:
        instruction, material = paragraphs, ""
    material = "\n\n".join([*fenced, material] if material else fenced)
    return InstructionSplit(instruction="\n\n".join(instruction), material=material)


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
        least = AFTER_COLON_MIN_CHARS if first.endswith(_COLONS) else MATERIAL_MIN_CHARS
        return [first, *paragraphs[end:]], paragraphs[1:end], least
    if len(last) <= TAIL_MAX_CHARS:
        return [last], paragraphs[:-1], MATERIAL_MIN_CHARS
    return paragraphs, [], MATERIAL_MIN_CHARS
