"""OpenAI's published OpenAPI schemas (vendored subset, see README.md) and a validator over them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS_FILE = Path(__file__).with_name("schemas.json")


@cache
def _document() -> dict[str, Any]:
    return _nullable_as_json_schema(json.loads(SCHEMAS_FILE.read_text(encoding="utf-8")))


def _nullable_as_json_schema(node: Any) -> Any:
    """OpenAI's document, though OpenAPI 3.1, still marks many fields with 3.0's `nullable: true`,
    which JSON Schema ignores; read it as 3.0 meant it: the schema, or null."""
    if isinstance(node, list):
        return [_nullable_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_as_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def schema_errors(body: Any, name: str) -> list[str]:
    """Every way `body` breaks `#/components/schemas/<name>` (JSON Schema 2020-12, as OpenAPI 3.1)."""
    from jsonschema import Draft202012Validator

    document = _document()
    if name not in document["components"]["schemas"]:
        raise KeyError(f"{name} is not vendored: add it to extract.py's ROOTS and regenerate")
    validator = Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document})
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<body>'}: {error.message}"
        for error in validator.iter_errors(body)
    ]
