"""Stable YAML text: same data, same bytes, on every machine.

Keys keep their insertion order (renderers build dicts in the order a reader expects: apiVersion,
kind, metadata, spec), multi-line strings are literal blocks, and nothing is wrapped. libyaml's
emitter and PyYAML's pure-Python one give the same bytes for these documents.
"""

from __future__ import annotations

from typing import Any

import yaml


class _ManifestDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """SafeDumper (libyaml's when present: same bytes, several times faster) writing shared sub-objects
    out in full: anchors are legal YAML but hard to review. Lists sit at their key's indent, as
    `kubectl get -o yaml` writes them."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_ManifestDumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """One YAML document, block style, keys in insertion order."""
    return yaml.dump(
        data,
        Dumper=_ManifestDumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        allow_unicode=True,
    )


def dump_documents(documents: list[Any], header: str = "") -> str:
    """Several YAML documents separated by `---`, after an optional comment header."""
    body = "---\n".join(dump_yaml(doc) for doc in documents)
    return header + body


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's when present) that refuses a key repeated in one mapping (kubectl's strict
    validation does too; plain YAML loading would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate field {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream; a key repeated within a mapping is an error.

    Raises:
        yaml.YAMLError: for invalid YAML or a duplicate key.
    """
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def load_document(text: str) -> Any:
    """The single document of a YAML text, strictly (see `load_documents`)."""
    return yaml.load(text, Loader=_StrictLoader)


def comment_header(lines: list[str]) -> str:
    """A `# ...` comment block for the top of a rendered file."""
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)
