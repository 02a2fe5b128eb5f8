"""Transparent difficulty features: what makes a prompt hard, each as a number in [0, 1].

Cues are read from the request's instruction, not from material pasted for it to work on
(instruction.py): one pass over the words of the cue text (the instruction first, then the other
turns, long text cut to its head and tail) feeds every keyword family (keywords.py); symbols (LaTeX,
arithmetic) are counted with a few cheap scans. Code symbols are counted in the material too: pasted
code makes a coding request. How much material there is is a feature of its own. Nothing here is
trained: the families and their saturation points are written down, and `FEATURE_NAMES` fixes the
order a learned model sees them in.
"""

from __future__ import annotations

import bisect
import math
import re

from deployments.router.keywords import (
    CONDITION_OPENERS,
    CONJUNCTIONS,
    FAMILY_WORDS,
    FOREIGN_WORDS,
    GATED_CODE_WORDS,
    HIGHER_ORDER_STEMS,
    PHRASES,
)
from deployments.router.routing_input import CUE_HEAD_CHARS, RoutingInput

FEATURE_NAMES: tuple[str, ...] = (
    "length",
    "turns",
    "images",
    "math",
    "code",
    "multi_step",
    "reasoning",
    "competition",
    "non_english",
    "demand",
    "parts",
    "material",
    "systems",
    "symbolic",
)

# A request of this many tokens or more counts as fully long (log scale below it).
LONG_PROMPT_TOKENS = 8192
LENGTH_SCALE_TOKENS = 32
# The language check reads this many characters of the query.
LANGUAGE_SAMPLE_CHARS = 1200
# What a request asks for (its verbs and its parts) is read from the head of its instruction: a
# pasted page's verbs and commas are the page's, not the request's.
INSTRUCTION_HEAD_CHARS = 400

_WORD = re.compile(r"[^\W\d_]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
# Symbol scans are literal counts or patterns that can only start at a digit or a rare character:
# alternations that may start at any letter cost milliseconds on long prompts.
_ARITHMETIC = re.compile(r"\d\s*[-+*/^×÷=<>]\s*[\d(a-z]|\d[a-z]\b")
_LATEX = re.compile(
    r"\\(?:frac|sum|int|sqrt|binom|cdot|leq|geq|neq|pi|alpha|beta|theta|lim|infty|mathbb)"
    # Inline maths by pandoc's rule: no space inside either dollar, no digit after the closing one,
    # so two prices ("$30 ... $15") are not a formula.
    r"|\$(?=\S)[^$\n]{1,80}(?<=\S)\$(?!\d)"
)
# A one-letter variable next to an operator or an argument list ("n^2 + 11n", "f(x + y)", "a, b > 0"):
# algebra, not arithmetic. "a" and "i" are left out (English words), as are the letters that
# apostrophes split off ("it's", "don't", "I'm", "I'd").
_VARIABLE = re.compile(r"(?<![\w.'’])[bcefghjknpqruvwxyz](?:\s*[\^=<>+*/≤≥≠·−]|\(|\s*,\s*[a-z]\b)")
# Not "%": percentages are everyday notation (prices, discounts, shares), and in code it is modulo.
_MATH_SYMBOLS = ("^", "∑", "∫", "√", "≤", "≥", "≠", "π", "∞", "∈", "∀", "∃", "≡")
# Arrows (`->`, `=>`, `-->`) are not here: diagram markup (mermaid, graphviz) and prose use them as
# much as code does.
_CODE_LITERALS = ("```", "#include", "SELECT ", "()")
# Keywords that are English words too ("return the shoes", "the function of the liver", "import
# duties") count only where code puts them: opening a line, after a brace, parenthesis, semicolon or
# colon, or before an argument list. Each pattern starts at a line start or a literal, so the scan
# stays cheap.
_CODE_STATEMENT = re.compile(
    r"^[ \t]*(?:return\b|import [\w.]+|from [\w.]+ import\b|def \w+\s*\(|class \w+\s*[:(])", re.MULTILINE
)
_CODE_INLINE = re.compile(r"[{;:)][ \t]*return\b|function\s*\w*\s*\(")
# Diagram blocks are markup, not code: they are cut out before the code scan.
_DIAGRAM_BLOCK = re.compile(r"```(?:mermaid|dot|graphviz|plantuml)\b.*?(?:```|$)", re.DOTALL)
_CODE_LINE_END = re.compile(r"[{};]$", re.MULTILINE)
# An ask to write code ("write a function", "implement an LRU cache class", "fix this script"): what
# makes the English-and-code words count when nothing else in the text is code. Read from the head
# of the instruction only, so the scan stays short.
_CODE_ASK = re.compile(
    r"\b(?:write|implement|create|define|code|fix|debug|refactor|optimi[sz]e|rewrite)\b[^.?!\n]{0,40}?"
    r"\b(?:function|functions|class|classes|method|program|script|query|code|library)\b"
)
_SNAKE_CASE = re.compile(r"[a-z0-9]_[a-z]")
_NUMBERED_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)
# Sentence boundaries: closing marks (not the point of a decimal, "$2.50") and Spanish opening ones.
_SENTENCE_BOUNDARY = re.compile(r"[!?\n。！？¿¡]|\.(?!\d)")
_OPENING_MARKS = ("¿", "¡")
_QUESTION_MARKS = ("?", "？")
_NON_LATIN = re.compile(
    r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u0e00-\u0eff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"
)


def word_families(
    family_words: dict[str, tuple[str, ...]], gated_code_words: frozenset[str]
) -> dict[str, str]:
    """Each keyword's family, for one dictionary lookup per word (gated code words are code words)."""
    families = {word: family for family, words in family_words.items() for word in words}
    families.update(dict.fromkeys(gated_code_words, "code"))
    return families


_WORD_FAMILY = word_families(FAMILY_WORDS, GATED_CODE_WORDS)


def _saturate(count: float, half: float) -> float:
    """Map a non-negative count to [0, 1): `half` counts give 0.5, more approach 1."""
    return 0.0 if count <= 0 else count / (count + half)


def _length_scale(tokens: int) -> float:
    """Tokens on a log scale in [0, 1]: 0 for none, 1 at `LONG_PROMPT_TOKENS` and beyond."""
    scale = math.log1p(tokens / LENGTH_SCALE_TOKENS) / math.log1p(LONG_PROMPT_TOKENS / LENGTH_SCALE_TOKENS)
    return min(1.0, scale)


def instruction_head(request: RoutingInput) -> str:
    """The lowercased head of the request's instruction (of its other turns when the query has none),
    where what it asks for (its verbs and its parts) is read."""
    split = request.split
    instruction = split.instruction if split.instruction.strip() else request.context
    return instruction[:INSTRUCTION_HEAD_CHARS].lower()


def joined_parts(text: str, boundaries: list[re.Match[str]] | None = None) -> int:
    """How many joiners (`CONJUNCTIONS`) in `text` join parts of what it asks (`boundaries`: its
    `_SENTENCE_BOUNDARY` matches, when the caller has them).

    A joiner that follows a single word of its sentence ("Hi, how are you?", "Hola, ¿qué tal?",
    "First, ...") sets off an interjection or an opener, not a part. When the text is several
    sentences ending in a question, the statements before the question set it up (a word problem's
    story, a description of the user's setup): only joiners in questions count. A leading condition
    sets the ask up too ("If she sells 12 and keeps 3, how many ...?"): joiners up to the comma that
    closes it are not parts either.
    """
    # One scan for the sentence boundaries; each joiner then finds its sentence by bisection.
    if boundaries is None:
        boundaries = list(_SENTENCE_BOUNDARY.finditer(text))
    positions = [mark.start() for mark in boundaries]
    question_only = _ends_in_question(text, boundaries)
    parts = 0
    for joiner in CONJUNCTIONS:
        start = text.find(joiner)
        while start >= 0:
            before = bisect.bisect_left(positions, start)
            sentence_start = boundaries[before - 1].end() if before else 0
            if (
                len(text[sentence_start:start].split()) >= 2
                and (not question_only or _closing_mark(boundaries[before:]) in _QUESTION_MARKS)
                and not _in_leading_condition(text, sentence_start, start)
            ):
                parts += 1
            start = text.find(joiner, start + 1)
    return parts


def _reasoning_words(words: list[str]) -> int:
    return sum(_WORD_FAMILY.get(word) == "reasoning" for word in words)


def asked_text(text: str, boundaries: list[re.Match[str]] | None = None) -> str:
    """The sentences of `text` that ask: its questions when it is statements followed by a closing
    question (the statements set the question up), else all of it (`boundaries` as for
    `joined_parts`)."""
    if boundaries is None:
        boundaries = list(_SENTENCE_BOUNDARY.finditer(text))
    if not _ends_in_question(text, boundaries):
        return text
    asked, start = [], 0
    for mark in boundaries:
        if mark.group() in _OPENING_MARKS:
            continue
        if mark.group() in _QUESTION_MARKS:
            asked.append(text[start : mark.end()])
        start = mark.end()
    return " ".join(asked)


def _in_leading_condition(text: str, sentence_start: int, position: int) -> bool:
    """Whether `position` lies in, or at the comma that closes, a condition its sentence opens with."""
    opening = text[sentence_start:position].split(maxsplit=1)
    if not opening or opening[0] not in CONDITION_OPENERS:
        return False
    comma = text.find(", ", sentence_start)
    return comma < 0 or comma >= position


def _closing_mark(following: list[re.Match[str]]) -> str:
    """The first closing mark among a sentence's following boundaries ("" at the end of the text)."""
    return next((mark.group() for mark in following if mark.group() not in _OPENING_MARKS), "")


def _ends_in_question(text: str, boundaries: list[re.Match[str]]) -> bool:
    """Whether `text` (whose `_SENTENCE_BOUNDARY` matches are `boundaries`) is statements followed by
    a closing question."""
    stripped = text.rstrip()
    if not stripped.endswith(_QUESTION_MARKS):
        return False
    last = len(stripped) - 1  # the closing question mark
    return any(0 < mark.start() < last and mark.group() not in _OPENING_MARKS for mark in boundaries)


def estimate_tokens(text: str) -> int:
    """Tokens a Qwen tokenizer would give, estimated without one (~4 ASCII chars or ~1.5 others a token)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return round(ascii_chars / 4 + (len(text) - ascii_chars) / 1.5)


def extract_features(request: RoutingInput) -> dict[str, float]:
    """The transparent features of one request.

    Returns:
        `FEATURE_NAMES` mapped to values in [0, 1], plus the raw counts behind them: `tokens`
        (estimated), `user_turns`, `image_count`.
    """
    split = request.split
    cue_text = request.cue_text()
    lowered = cue_text.lower()
    hits = dict.fromkeys((*FAMILY_WORDS, *PHRASES), 0)
    gated_code = 0
    for word in _WORD.findall(lowered):
        family = _WORD_FAMILY.get(word)
        if family == "code" and word in GATED_CODE_WORDS:
            gated_code += 1
        elif family is not None:
            hits[family] += 1
    for family, phrases in PHRASES.items():
        hits[family] += sum(lowered.count(phrase) for phrase in phrases)

    tokens = estimate_tokens(split.instruction) + estimate_tokens(request.context)
    material_tokens = estimate_tokens(split.material)
    numbers = len(_NUMBER.findall(cue_text))
    math_symbols = (
        len(_ARITHMETIC.findall(lowered))
        + len(_LATEX.findall(cue_text))
        + sum(cue_text.count(symbol) for symbol in _MATH_SYMBOLS)
    )
    code_text = f"{cue_text}\n{split.material[:CUE_HEAD_CHARS]}" if split.material else cue_text
    code_text = _DIAGRAM_BLOCK.sub(" ", code_text) if "```" in code_text else code_text
    code_symbols = (
        sum(code_text.count(literal) for literal in _CODE_LITERALS)
        + len(_CODE_STATEMENT.findall(code_text))
        + len(_CODE_INLINE.findall(code_text))
        + len(_CODE_LINE_END.findall(code_text))
        + (len(_SNAKE_CASE.findall(code_text)) if "_" in code_text else 0)
    )
    numbered_items = len(_NUMBERED_ITEM.findall(cue_text))
    variables = len(_VARIABLE.findall(lowered))

    # Competition phrases ("find all", "such that") are ordinary prose too: they count only where the
    # text is about mathematics.
    mathematical = hits["math"] + math_symbols > 0 or variables >= 2
    if not mathematical:
        hits["competition"] = 0
    instruction = instruction_head(request)
    # As for parts: in statements followed by a question, the statements set the question up ("James
    # is building a hall of mirrors ... how many square feet of glass?"): only the question asks.
    # One scan of its sentence boundaries serves the ask and the parts.
    boundaries = list(_SENTENCE_BOUNDARY.finditer(instruction))
    asked = asked_text(instruction, boundaries)
    # A word a keyword family already counts ("compare", "recommend" as reasoning) is not counted
    # again: one word, one cue.
    asked_words = _WORD.findall(asked)
    higher_order = sum(
        1 for word in asked_words if word.startswith(HIGHER_ORDER_STEMS) and word not in _WORD_FAMILY
    )
    if asked is not instruction:
        # The same for reasoning words ("his parents argue that ..."): those of the setup do not count.
        in_setup = _reasoning_words(_WORD.findall(instruction)) - _reasoning_words(asked_words)
        hits["reasoning"] = max(0, hits["reasoning"] - in_setup)
    parts = joined_parts(instruction, boundaries)
    # Words such as "function", "class" or "table" count only where the text is about code: another
    # code word, code symbols, or an ask to write code.
    if gated_code and (hits["code"] or code_symbols or _CODE_ASK.search(instruction)):
        hits["code"] += gated_code
    length = _length_scale(tokens)
    features = {
        "length": length,
        "turns": min(1.0, (request.user_turns - 1) / 4),
        "images": min(1.0, request.images / 3),
        "math": _saturate(hits["math"] + math_symbols, 3.0),
        "code": _saturate(hits["code"] + 2 * code_symbols, 3.0),
        # Word problems chain several quantities: numbers past the second count as steps.
        "multi_step": _saturate(max(0, numbers - 2) + numbered_items * 0.5, 3.0),
        "reasoning": _saturate(hits["reasoning"], 2.0),
        "competition": _saturate(hits["competition"], 1.0),
        "non_english": non_english_share(request.query[:LANGUAGE_SAMPLE_CHARS]),
        # Cross-family signs of a hard request, however short: verbs that ask to analyse, evaluate or
        # create, and how many parts the request joins together.
        "demand": _saturate(higher_order, 2.0),
        "parts": _saturate(parts, 2.0),
        # Pasted material makes a request at least "work over this text", and very long material a
        # long-context one, whatever the instruction asks.
        "material": _length_scale(material_tokens),
        "systems": _saturate(hits["systems"], 1.0),
        # One-letter variables in mathematical text: algebra and competition problems, not sums.
        "symbolic": _saturate(variables, 2.0) if mathematical else 0.0,
        "tokens": float(tokens + material_tokens),
        "user_turns": float(request.user_turns),
        "image_count": float(request.images),
    }
    return features


def non_english_share(text: str) -> float:
    """How clearly `text` is not English, in [0, 1].

    Non-Latin scripts (CJK, Cyrillic, Arabic, Devanagari, ...) count per character; Latin-script
    languages are recognised by their common function words.
    """
    if not text:
        return 0.0
    letters = text.replace(" ", "")
    script_share = len(_NON_LATIN.findall(text)) / max(1, len(letters))
    words = _WORD.findall(text.lower())
    foreign_share = sum(1 for word in words if word in FOREIGN_WORDS) / len(words) if words else 0.0
    # English has none of these words; French, Spanish or German text has about one in five. Accents
    # alone are no sign: English borrows café and naïve.
    return min(1.0, max(script_share * 2.0, foreign_share * 5.0))
