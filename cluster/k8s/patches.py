"""JSON patches (RFC 6902) between two renderings of a manifest, and applying them.

Overlays are written as JSON patches rather than strategic-merge patches: kustomize has no merge keys
for custom resources, and a JSON patch means exactly the same thing to kustomize, kubectl and the
tests here.
"""

from __future__ import annotations

import copy
import json
from typing import Any


class PatchError(ValueError):
    """A patch operation does not fit the document."""


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _same(left: Any, right: Any) -> bool:
    # json.dumps tells 1, 1.0 and True apart, which == does not.
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def json_patch_diff(base: Any, target: Any, path: str = "") -> list[dict[str, Any]]:
    """Operations that turn `base` into `target`: maps are compared key by key, lists as a whole."""
    if isinstance(base, dict) and isinstance(target, dict):
        ops: list[dict[str, Any]] = [
            {"op": "remove", "path": f"{path}/{_escape(key)}"} for key in base if key not in target
        ]
        for key, value in target.items():
            child = f"{path}/{_escape(key)}"
            if key not in base:
                ops.append({"op": "add", "path": child, "value": value})
            else:
                ops += json_patch_diff(base[key], value, child)
        return ops
    if _same(base, target):
        return []
    return [{"op": "replace", "path": path, "value": target}]


def _parent(document: Any, path: str) -> tuple[Any, str]:
    if not path.startswith("/"):
        raise PatchError(f"patch path {path!r} must start with /")
    tokens = [_unescape(t) for t in path[1:].split("/")]
    node = document
    for token in tokens[:-1]:
        if isinstance(node, list):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise PatchError(f"patch path {path!r}: {token!r} does not exist")
    return node, tokens[-1]


def apply_json_patch(document: Any, ops: list[dict[str, Any]]) -> Any:
    """A copy of `document` with `ops` (add, remove, replace) applied in order.

    Raises:
        PatchError: when an operation's path does not exist or the operation is unknown.
    """
    result = copy.deepcopy(document)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if path == "":
            if kind != "replace":
                raise PatchError(f"cannot {kind} the whole document")
            result = copy.deepcopy(op["value"])
            continue
        parent, key = _parent(result, path)
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            else:
                raise PatchError(f"unsupported patch op {kind!r}")
        elif kind == "add":
            parent[key] = copy.deepcopy(op["value"])
        elif kind in ("replace", "remove"):
            if key not in parent:
                raise PatchError(f"patch path {path!r} does not exist")
            if kind == "replace":
                parent[key] = copy.deepcopy(op["value"])
            else:
                del parent[key]
        else:
            raise PatchError(f"unsupported patch op {kind!r}")
    return result
