"""Cut the schemas the contract tests need out of OpenAI's OpenAPI document (see README.md).

Usage: python tests/support/openapi/extract.py PATH/TO/openapi.json > tests/support/openapi/schemas.json
Not run by the tests; kept so the vendored file can be regenerated from a newer document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOTS = [
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionRequest",
    "CreateCompletionResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
]


def refs(node, found: set[str]) -> None:
    """Add every `#/components/schemas/X` that `node` references to `found`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def main(path: str) -> None:
    """Print the roots and every schema they reach, as one JSON object."""
    schemas = json.loads(Path(path).read_text(encoding="utf-8"))["components"]["schemas"]
    keep: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found: set[str] = set()
        refs(schemas[name], found)
        todo.extend(found - keep)
    json.dump(
        {"components": {"schemas": {n: schemas[n] for n in sorted(keep)}}},
        sys.stdout,
        indent=1,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
