"""Structural signals of a request: its shape, not its words.

The difficulty scorer reads these next to the sentence embedding: how long the request is, how many
turns and images it carries, whether it holds code, offers tools or constrains the answer to a
schema. Each is a number in [0, 1]; `SIGNAL_NAMES` fixes the order a trained head reads them in.
"""

from __future__ import annotations

import math
import re

from deployments.router.features import estimate_tokens
from deployments.router.routing_input import RoutingInput

SIGNAL_NAMES: tuple[str, ...] = ("length", "turns", "images", "code", "tools", "structured")
# A request this many tokens long or longer counts as fully long (log scale below it).
LONG_TOKENS = 8192
# Code shows as fences or as lines that only code writes: a statement keyword opening a line, or a
# line ending in a brace or semicolon. Five such lines count as fully code.
_CODE_LINE = re.compile(r"^[ \t]*(?:def |class |return\b|import |from \S+ import|#include)|[{};][ \t]*$", re.MULTILINE)
CODE_LINES_FULL = 5


def structural_signals(request: RoutingInput) -> dict[str, float]:
    """The request's structural signals, by `SIGNAL_NAMES`."""
    text = request.query if not request.context else f"{request.context}\n{request.query}"
    tokens = estimate_tokens(text)
    fences = text.count("```") // 2
    code_lines = len(_CODE_LINE.findall(text)) if fences == 0 else CODE_LINES_FULL
    return {
        "length": min(1.0, math.log1p(tokens) / math.log1p(LONG_TOKENS)),
        "turns": min(1.0, (request.user_turns - 1) / 4),
        "images": min(1.0, request.images / 2),
        "code": min(1.0, code_lines / CODE_LINES_FULL),
        "tools": 1.0 if "tools" in request.structure else 0.0,
        "structured": 1.0 if "structured" in request.structure else 0.0,
    }
