"""Keyword tables of the transparent features: which words and phrases signal what.

Each word belongs to one family, so extraction does one dictionary lookup per word. Phrases are
matched as substrings of the lowercased text. Lists are space-separated strings for readability.

Every list measured as keeping its place: dropping it lowered the held-out figures (`python
training/router/ablate_keywords.py`, table and rule in training/router/README.md). When the lists
were cut (2026-12-06), every entry occurred in at least one measured text (template rows, public
tier prompts, public graded questions; not necessarily a training row); lists and entries that did
not were removed (issue 28). Since then `weigh` went (it fired on a thing's weight), and `begründ`
no longer occurs in a measured text (the text it occurred in is now split off as material); it
stays with the other languages' stems.
"""

# ruff: noqa: SIM905

from __future__ import annotations

FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "math": tuple(
        (
            "equations solve prime primes divisible divisors fraction triangle radius angle series "
            "integer integers digit expected compute subsets"
        ).split()
    ),
    "code": tuple(
        ("python javascript typescript java rust sql kotlin compiler api concurrent runtime").split()
    ),
    "reasoning": tuple(
        (
            "why explain explanation analyze analyse analysis compare comparison contrast evaluate "
            "assess critique argue justify implications tradeoff pros cons recommend "
            "recommendation strategy strategies design architecture reasoning infer deduce "
            "hypothesis hypotheses consequences risks discuss weigh alternatives diagnose causal"
        ).split()
    ),
}

# Code words that are ordinary English too ("the function of the liver", "my class", "a table for
# two", "lock the door"); they count as code only in text that is about code (features.py).
GATED_CODE_WORDS: frozenset[str] = frozenset(
    ("function implement bug schema library thread code lock cache query join table index").split()
)

# Substrings of the lowercased text.
PHRASES: dict[str, tuple[str, ...]] = {
    # The vocabulary of counting, number-theory, geometry and extremal problems; counted only in
    # mathematical text (features.py), so "such that" or "the maximum of" in prose stays quiet.
    "competition": (
        "find all",
        "determine all",
        "positive integers",
        "how many integers",
        "ordered pairs",
        "find the number of",
        "compute the number of",
        "expected number",
        "perfect square",
        "perfect cube",
        "such that",
        "angle bisector",
        "subsets",
        "sum of all",
        "minimum of",
    ),
    # Asks to build or design a whole system, however briefly put: the artefact's scope, scale and
    # guarantees ("a compiler", "lock-free", "100k writes per second").
    "systems": (
        "compiler",
        "garbage collector",
        "query planner",
        "container runtime",
        "load balancer",
        "rate limiter",
        "text editor",
        "http/2",
        "from sockets up",
        "key-value store",
        "ray tracer",
        "distributed",
        "lock-free",
        "consensus",
        "crdt",
        "production quality",
        "failure modes",
        "partitioning",
        "per second",
        "daily users",
        "p99",
        "verteilt",
        "コンパイラ",
        "ロックフリー",
        "分散",
    ),
}

# Stems of the verbs that ask for the top of Bloom's taxonomy (analyse, evaluate, create): what makes
# "Reconstruct Hume's argument and defend a reply" or "Build a compiler" hard is the work it asks
# for, not its length or topic. Matched at the start of a word, so inflections count ("analiza",
# "justifie"); a word that FAMILY_WORDS lists counts there only.
HIGHER_ORDER_STEMS: tuple[str, ...] = tuple(
    (
        "analy anali critic crític evalu evalú assess justif defen reconstru design build "
        "implement deriv prove optim quantif compar contrast synthes recommend propos "
        "formulat bewert begründ beweis démontr"
    ).split()
)
# Words that join the parts of a request ("cover X, Y and Z"), per language.
CONJUNCTIONS: tuple[str, ...] = (", ", "; ", " and ", " y ", " et ", " und ")
# A sentence that opens with one of these sets a condition before its ask: the joiners in the
# condition are not parts of the ask. "when", "after", "given", "since", "because" and "while" measured
# no different on the public tiers and the templates (training/router/README.md), so only "if" is kept.
CONDITION_OPENERS: tuple[str, ...] = ("if",)

# Common function words of Latin-script languages (es, fr, de, it); English homographs (pour, son,
# met, con, per, die, los, las, von, com, ...) are left out.
FOREIGN_WORDS: frozenset[str] = frozenset(
    (
        "cette ciao cómo des eine el es est für hola il ist le les mais mit para pero por que qui "
        "qué una und une wie"
    ).split()
)
