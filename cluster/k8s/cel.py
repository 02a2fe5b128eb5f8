"""The small part of CEL that KubeRay's `x-kubernetes-validations` rules use.

Supported: `self` and `oldSelf` with field selection, `has(...)`, `!`, `&&`, `||`, `==`, `!=`, `in`,
list, string, number and boolean literals, parentheses. A rule using anything else fails to compile
(`CelUnsupported`), so the validator can report it instead of silently passing it. Rules that read
`oldSelf` are transition rules: the API server checks them only on update, never on create.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<op>\|\||&&|==|!=|!|\(|\)|\[|\]|,|\.)|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)
_MISSING = object()


class CelUnsupported(ValueError):
    """The rule uses CEL this evaluator does not implement."""


class CelEvaluationError(ValueError):
    """The rule failed at run time (e.g. it selects a field that is not set), which the API server rejects."""


def _tokenize(rule: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    rule = rule.strip()
    while position < len(rule):
        match = _TOKEN.match(rule, position)
        if not match or match.end() == position:
            raise CelUnsupported(f"cannot read {rule[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the token list; builds nested tuples."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.index = 0

    def peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.index >= len(self.tokens):
            raise CelUnsupported("unexpected end of rule")
        token = self.tokens[self.index]
        if expected is not None and token[1] != expected:
            raise CelUnsupported(f"expected {expected!r}, found {token[1]!r}")
        self.index += 1
        return token

    def parse(self) -> tuple:
        tree = self.disjunction()
        if self.index != len(self.tokens):
            raise CelUnsupported(f"unexpected {self.peek()!r}")
        return tree

    def disjunction(self) -> tuple:
        tree = self.conjunction()
        while self.peek() == "||":
            self.take()
            tree = ("or", tree, self.conjunction())
        return tree

    def conjunction(self) -> tuple:
        tree = self.unary()
        while self.peek() == "&&":
            self.take()
            tree = ("and", tree, self.unary())
        return tree

    def unary(self) -> tuple:
        if self.peek() == "!":
            self.take()
            return ("not", self.unary())
        left = self.primary()
        if self.peek() in ("==", "!=", "in"):
            operator = self.take()[1]
            return (operator, left, self.primary())
        return left

    def primary(self) -> tuple:
        kind, text = self.take()
        if text == "(":
            tree = self.disjunction()
            self.take(")")
            return tree
        if text == "[":
            items = []
            while self.peek() != "]":
                items.append(self.disjunction())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return ("list", items)
        if kind == "str":
            return ("const", bytes(text[1:-1], "utf-8").decode("unicode_escape"))
        if kind == "num":
            return ("const", float(text) if "." in text else int(text))
        if text in ("true", "false"):
            return ("const", text == "true")
        if text == "has":
            self.take("(")
            path = self.selection(self.take()[1])
            self.take(")")
            if len(path) < 2:
                raise CelUnsupported("has() needs a field selection")
            return ("has", path)
        if kind == "ident":
            return ("select", self.selection(text))
        raise CelUnsupported(f"unexpected {text!r}")

    def selection(self, root: str) -> tuple[str, ...]:
        if root not in ("self", "oldSelf"):
            raise CelUnsupported(f"unknown identifier {root!r}")
        path = [root]
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "ident":
                raise CelUnsupported(f"bad field name {name!r}")
            path.append(name)
        if self.peek() == "(":
            raise CelUnsupported(f"function call on {'.'.join(path)}")
        return tuple(path)


@dataclass(frozen=True)
class CelRule:
    """A compiled rule.

    Attributes:
        source: the rule text.
        tree: the parsed expression.
        transition: whether it reads `oldSelf` (checked on update only).
    """

    source: str
    tree: tuple
    transition: bool

    def holds(self, value: Any) -> bool:
        """Evaluate against `self = value`.

        Raises:
            CelEvaluationError: when the rule errors at run time.
        """
        return bool(_evaluate(self.tree, value))


def compile_rule(source: str) -> CelRule:
    """Parse a rule.

    Raises:
        CelUnsupported: when the rule uses CEL outside the supported subset.
    """
    tree = _Parser(_tokenize(source)).parse()
    return CelRule(source=source, tree=tree, transition="oldSelf" in repr(tree))


def _resolve(path: tuple[str, ...], value: Any) -> Any:
    node = value
    for name in path[1:]:
        if not isinstance(node, dict) or name not in node:
            return _MISSING
        node = node[name]
    return node


def _evaluate(tree: tuple, value: Any) -> Any:
    kind = tree[0]
    if kind == "const":
        return tree[1]
    if kind == "list":
        return [_evaluate(item, value) for item in tree[1]]
    if kind == "select":
        found = _resolve(tree[1], value)
        if found is _MISSING:
            raise CelEvaluationError(f"no such key: {'.'.join(tree[1])}")
        return found
    if kind == "has":
        parent = _resolve(tree[1][:-1], value)
        return isinstance(parent, dict) and tree[1][-1] in parent
    if kind == "not":
        return not _evaluate(tree[1], value)
    if kind == "and":
        return _evaluate(tree[1], value) and _evaluate(tree[2], value)
    if kind == "or":
        return _evaluate(tree[1], value) or _evaluate(tree[2], value)
    left, right = _evaluate(tree[1], value), _evaluate(tree[2], value)
    if kind == "==":
        return left == right
    if kind == "!=":
        return left != right
    if kind == "in":
        return left in right
    raise CelUnsupported(f"unknown node {kind}")
