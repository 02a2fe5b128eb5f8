"""Structured outputs on the transformers engine with xgrammar (the backend vLLM uses).

A `StructuredOutput` is compiled once per (tokenizer, spec) and kept in an LRU cache; each constrained
row gets its own `GrammarMatcher`. Every decode step fills a token bitmask for the constrained rows
only and applies it to those rows' logits, so constrained and free rows share a batch. JSON is
generated compact (no free whitespace between tokens), as vLLM does with `disable_any_whitespace`,
so a small model cannot wander into whitespace until its token budget runs out.

Thinking: constrained rows are generated with thinking off (the engines render their prompt with
`enable_thinking=False`), so the whole completion is the constrained value. A reasoning-aware mask
(free until `</think>`) would let a weak model think until `max_tokens` and never answer.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Any

from deployments.engines.base import EngineRequestError, StructuredOutput

# Compiled grammars kept per engine; a JSON schema compiles in milliseconds, so a small cache is
# enough to make repeated schemas (tool definitions, an extraction job's schema) free.
DEFAULT_CACHE_SIZE = 256

_XGRAMMAR_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: \(.*?\) is false:\s*)?")


# The string-character classes xgrammar 0.2.9 writes into JSON grammars: the loose one (length-bounded
# strings) lets raw control characters through, which no JSON parser accepts, and both accept the
# three-byte encodings of UTF-16 surrogates (ED A0-BF xx), which are not UTF-8: a byte-level
# tokenizer can spell one, and the client receives U+FFFD. Both are replaced by `_SAFE_STRING_CHAR`.
_LOOSE_STRING_CHAR = '[^\\"\\\\\\r\\n]'
_JSON_STRING_CHAR = '[^\\0-\\x1f\\"\\\\\\r\\n]'
_SAFE_STRING_CHAR = '[^\\0-\\x1f\\"\\\\\\r\\n\\uD800-\\uDFFF]'


def structured_param(spec: StructuredOutput) -> str:
    """The request field a spec came from, for the `param` of its errors."""
    return "response_format" if spec.kind in ("json_schema", "json_object") else "structured_outputs"


def _clean(error: Exception) -> str:
    """xgrammar's message without its timestamp and C++ source location."""
    lines = str(error).strip().splitlines() or [repr(error)]
    return _XGRAMMAR_PREFIX.sub("", lines[0]).strip() or repr(error)


def choice_grammar(spec: str) -> str:
    """An EBNF grammar that accepts exactly one of the JSON list of strings in `spec`.

    Raises:
        EngineRequestError: `spec` is not a non-empty JSON list of strings.
    """
    try:
        choices = json.loads(spec)
    except (TypeError, ValueError):
        choices = None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise EngineRequestError(
            "choice must be a non-empty list of non-empty strings", param="structured_outputs"
        )
    return "root ::= " + " | ".join(json.dumps(choice, ensure_ascii=False) for choice in choices)


def _json_grammar(schema: str, *, strict: bool):
    """xgrammar's compact grammar for `schema`, with every string character valid JSON and UTF-8."""
    import xgrammar as xgr

    # Separators spelled out: without them xgrammar puts a space after ',' and ':' (json.dumps'
    # default), which vLLM's `disable_any_whitespace` (the semantics this module promises) does not.
    grammar = xgr.Grammar.from_json_schema(
        schema, any_whitespace=False, separators=(",", ":"), strict_mode=strict
    )
    text = str(grammar)
    if _LOOSE_STRING_CHAR not in text and _JSON_STRING_CHAR not in text:
        return grammar
    text = text.replace(_LOOSE_STRING_CHAR, _SAFE_STRING_CHAR).replace(_JSON_STRING_CHAR, _SAFE_STRING_CHAR)
    return xgr.Grammar.from_ebnf(text)


def _grammar(spec: StructuredOutput):
    """The uncompiled xgrammar `Grammar` of `spec` (no tokenizer needed)."""
    import xgrammar as xgr

    if spec.kind == "json_object":
        # An object, as OpenAI's json_object promises (xgrammar's builtin JSON grammar admits any value).
        return _json_grammar('{"type": "object"}', strict=False)
    if spec.spec is None:
        raise EngineRequestError(f"{spec.kind} needs a specification", param=structured_param(spec))
    if spec.kind == "json_schema":
        return _json_grammar(spec.spec, strict=True)
    if spec.kind == "regex":
        return xgr.Grammar.from_regex(spec.spec)
    if spec.kind == "choice":
        return xgr.Grammar.from_ebnf(choice_grammar(spec.spec))
    if spec.kind == "grammar":
        return xgr.Grammar.from_ebnf(spec.spec)
    raise EngineRequestError(f"unknown structured output kind {spec.kind!r}", param=structured_param(spec))


def json_ebnf(spec: StructuredOutput) -> str:
    """The EBNF text of a `json_schema` or `json_object` spec's grammar: compact JSON whose strings
    hold only valid JSON characters. The vLLM engine decodes under this same grammar, so both engines
    give JSON one meaning (vLLM's own JSON grammar admits raw control characters in strings, and
    vLLM 0.32 ignores the per-request whitespace switch).

    Raises:
        EngineRequestError: the schema does not compile.
    """
    return str(_grammar(spec))


def validate_structured(spec: StructuredOutput) -> None:
    """Check that `spec` compiles, before any model work and without a tokenizer.

    Raises:
        EngineRequestError: naming the problem (an unsupported JSON Schema feature, a `$ref`
            cycle, a bad regular expression or grammar), with `param` set.
    """
    try:
        _grammar(spec)
    except EngineRequestError:
        raise
    except Exception as error:  # xgrammar raises RuntimeError / ValueError with a C++ message
        raise EngineRequestError(
            f"invalid {spec.kind.replace('_', ' ')}: {_clean(error)}", param=structured_param(spec)
        ) from None


class RowConstraint:
    """One row's grammar matcher: fills that row's bitmask and accepts its sampled tokens."""

    def __init__(self, matcher: Any):
        self._matcher = matcher

    def fill(self, bitmask, index: int) -> None:
        """Write the allowed next tokens into row `index` of `bitmask`."""
        self._matcher.fill_next_token_bitmask(bitmask, index)

    def accept(self, token: int) -> bool:
        """Advance the matcher by `token`; False when the grammar rejects it."""
        return bool(self._matcher.accept_token(token))

    @property
    def terminated(self) -> bool:
        """The grammar is complete and its stop token was accepted."""
        return bool(self._matcher.is_terminated())


class GrammarCache:
    """Compiles `StructuredOutput`s for one tokenizer, keeping an LRU of compiled grammars.

    Args:
        tokenizer: the checkpoint's Hugging Face tokenizer.
        vocab_size: the model's logits width (may exceed the tokenizer's vocabulary).
        stop_token_ids: ids that end a turn (the grammar ends on one of them).
        capacity: compiled grammars kept.
    """

    def __init__(
        self, tokenizer, vocab_size: int, stop_token_ids: list[int], capacity: int = DEFAULT_CACHE_SIZE
    ):
        import xgrammar as xgr

        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_token_ids)
        )
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._compiled: OrderedDict[StructuredOutput, Any] = OrderedDict()
        self._capacity = capacity

    def compile(self, spec: StructuredOutput):
        """The compiled grammar of `spec` (cached by value).

        Raises:
            EngineRequestError: the spec does not compile.
        """
        cached = self._compiled.get(spec)
        if cached is not None:
            self._compiled.move_to_end(spec)
            return cached
        try:
            compiled = self._compiler.compile_grammar(_grammar(spec))
        except EngineRequestError:
            raise
        except Exception as error:
            raise EngineRequestError(
                f"invalid {spec.kind.replace('_', ' ')}: {_clean(error)}", param=structured_param(spec)
            ) from None
        self._compiled[spec] = compiled
        if len(self._compiled) > self._capacity:
            self._compiled.popitem(last=False)
        return compiled

    def constraint(self, spec: StructuredOutput) -> RowConstraint:
        """A fresh matcher for one row."""
        import xgrammar as xgr

        return RowConstraint(xgr.GrammarMatcher(self.compile(spec)))

    def allocate(self, rows: int):
        """A bitmask tensor for `rows` rows."""
        import xgrammar as xgr

        return xgr.allocate_token_bitmask(rows, self.vocab_size)


def apply_bitmask(logits, bitmask, indices: list[int]) -> None:
    """Mask (in place) the logits of rows `indices` with their rows of `bitmask`."""
    import xgrammar as xgr

    xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=logits.shape[-1], indices=indices)
