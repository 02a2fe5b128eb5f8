"""Strict validation of manifests against CRD structural schemas (`openAPIV3Schema`).

It follows the API server with strict field validation (what `kubectl apply` uses): a field the
schema does not define is an error, not silently pruned, unless the schema says
`x-kubernetes-preserve-unknown-fields`. It honours `x-kubernetes-int-or-string`, `additionalProperties`
maps, `nullable`, `x-kubernetes-list-type` (map keys and set items must be unique) and evaluates
`x-kubernetes-validations` rules with a small CEL subset (transition rules, which need the old
object, are skipped as on create). Object metadata is checked as ObjectMeta, since CRDs leave it
to the API server. Stricter than the server in one way: a `null` value is an error where the
server would drop it, since a rendered manifest should never carry one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from cluster.k8s.cel import CelEvaluationError, CelRule, CelUnsupported, compile_rule

CRD_DIR_ENV = "QWEN_KUBERAY_CRDS"
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
OBJECT_META_FIELDS = ("name", "generateName", "namespace", "labels", "annotations")


def default_crd_dir() -> Path:
    """`$QWEN_KUBERAY_CRDS`, else `<repo>/../shared/kuberay/crds` (where CI clones shared/)."""
    if os.environ.get(CRD_DIR_ENV):
        return Path(os.environ[CRD_DIR_ENV])
    return Path(__file__).resolve().parents[2].parent / "shared" / "kuberay" / "crds"


@dataclass
class Tally:
    """How much a validation run checked."""

    documents: int = 0
    nodes: int = 0
    cel_rules: int = 0
    cross_checks: int = 0


@dataclass(frozen=True)
class CrdCatalog:
    """Served versions of the loaded CRDs: `(apiVersion, kind) -> openAPIV3Schema`."""

    schemas: dict[tuple[str, str], dict[str, Any]]

    def schema_for(self, api_version: str, kind: str) -> dict[str, Any] | None:
        """The schema of a served version, or None."""
        return self.schemas.get((api_version, kind))

    def kinds(self) -> list[str]:
        """Kinds with at least one served version."""
        return sorted({kind for _, kind in self.schemas})


def load_crds(crd_dir: Path) -> CrdCatalog:
    """Read every CRD YAML in `crd_dir`.

    Raises:
        FileNotFoundError: when the folder holds no CRD.
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        # libyaml when present: the four CRDs are 4 MB, about 20 s in pure Python and 1 s in C.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        raise FileNotFoundError(f"no CustomResourceDefinition found in {crd_dir}")
    return CrdCatalog(schemas)


def schema_at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The sub-schema at a dotted property path (`[]` steps into array items).

    Raises:
        KeyError: when the path does not exist.
    """
    node = schema
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


@dataclass
class StructuralValidator:
    """Validates values against structural schemas; collects problems as `path: message`."""

    tally: Tally = field(default_factory=Tally)
    _rules: dict[str, CelRule | CelUnsupported] = field(default_factory=dict)

    def validate_resource(self, document: Any, catalog: CrdCatalog) -> list[str]:
        """Validate one custom resource: apiVersion/kind served, metadata as ObjectMeta, the rest by schema."""
        if not isinstance(document, dict):
            return ["<root>: a manifest must be a mapping"]
        api_version, kind = document.get("apiVersion"), document.get("kind")
        schema = catalog.schema_for(str(api_version), str(kind))
        if schema is None:
            return [f"<root>: no served CRD version for apiVersion {api_version!r}, kind {kind!r}"]
        self.tally.documents += 1
        problems = self.validate_object_meta(document.get("metadata"), "metadata")
        body = {key: value for key, value in document.items() if key != "metadata"}
        problems += self.validate(body, schema, "")
        return problems

    def validate_object_meta(self, metadata: Any, path: str) -> list[str]:
        """ObjectMeta as a client would send it: name or generateName, label and name syntax."""
        if not isinstance(metadata, dict):
            return [f"{path}: required mapping is missing"]
        problems = [f"{_join(path, key)}: unknown field" for key in metadata if key not in OBJECT_META_FIELDS]
        name, generate = metadata.get("name"), metadata.get("generateName")
        if not name and not generate:
            problems.append(f"{path}: name or generateName is required")
        if name is not None and not (
            isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)
        ):
            problems.append(f"{path}.name: {name!r} is not a DNS-1123 subdomain")
        if generate is not None and not (
            isinstance(generate, str) and DNS1123_SUBDOMAIN.match(generate.rstrip("-") or "-")
        ):
            problems.append(f"{path}.generateName: {generate!r} is not a DNS-1123 prefix")
        namespace = metadata.get("namespace")
        if namespace is not None and not (isinstance(namespace, str) and DNS1123_LABEL.match(namespace)):
            problems.append(f"{path}.namespace: {namespace!r} is not a DNS-1123 label")
        problems += label_problems(metadata.get("labels"), f"{path}.labels")
        annotations = metadata.get("annotations", {})
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            problems.append(f"{path}.annotations: values must be strings")
        return problems

    def validate(self, value: Any, schema: dict[str, Any], path: str) -> list[str]:
        """Problems of `value` against `schema`, each `dotted.path: message`."""
        self.tally.nodes += 1
        where = path or "<root>"
        if value is None:
            return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
        if isinstance(value, date):
            value = value.isoformat()
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                return [f"{where}: must be an integer or a string, got {type(value).__name__}"]
            problems = self._scalar(value, schema, where)
        else:
            problems = self._typed(value, schema, path, where)
            if problems is None:
                return []
            for keyword in ("allOf", "anyOf", "oneOf", "not"):
                if keyword in schema:
                    problems += self._combined(keyword, value, schema[keyword], path, where)
        if not problems:
            problems += self._rules_problems(value, schema.get("x-kubernetes-validations", []), where)
        return problems

    def _typed(self, value: Any, schema: dict[str, Any], path: str, where: str) -> list[str] | None:
        kind = schema.get("type")
        if kind is None:
            return (
                None
                if schema.get("x-kubernetes-preserve-unknown-fields")
                else self._scalar(value, schema, where)
            )
        checks = {
            "object": lambda: isinstance(value, dict),
            "array": lambda: isinstance(value, list),
            "string": lambda: isinstance(value, str),
            "integer": lambda: isinstance(value, int) and not isinstance(value, bool),
            "number": lambda: isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": lambda: isinstance(value, bool),
        }
        if kind not in checks:
            return [f"{where}: schema has unknown type {kind!r}"]
        if not checks[kind]():
            return [f"{where}: must be of type {kind}, got {type(value).__name__} {value!r}"[:300]]
        if kind == "object":
            return self._object(value, schema, path, where)
        if kind == "array":
            return self._array(value, schema, path, where)
        return self._scalar(value, schema, where)

    def _object(self, value: dict, schema: dict[str, Any], path: str, where: str) -> list[str]:
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        problems = []
        for key, item in value.items():
            child = _join(path, key)
            if not isinstance(key, str):
                problems.append(f"{child}: field names must be strings")
            elif key in properties:
                problems += self.validate(item, properties[key], child)
            elif isinstance(additional, dict):
                problems += self.validate(item, additional, child)
            elif not (additional is True or preserve):
                problems.append(f"{child}: unknown field")
        problems += [
            f"{_join(path, key)}: required field is missing"
            for key in schema.get("required", [])
            if key not in value
        ]
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            problems.append(f"{where}: needs at least {schema['minProperties']} fields")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            problems.append(f"{where}: allows at most {schema['maxProperties']} fields")
        return problems

    def _array(self, value: list, schema: dict[str, Any], path: str, where: str) -> list[str]:
        problems = []
        if "items" in schema:
            for index, item in enumerate(value):
                problems += self.validate(item, schema["items"], f"{path}[{index}]")
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where}: allows at most {schema['maxItems']} items")
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map" and all(isinstance(item, dict) for item in value):
            keys = schema.get("x-kubernetes-list-map-keys", [])
            item_props = schema.get("items", {}).get("properties", {})
            seen: set[tuple] = set()
            for index, item in enumerate(value):
                identity = tuple(repr(item.get(k, item_props.get(k, {}).get("default"))) for k in keys)
                if identity in seen:
                    problems.append(f"{path}[{index}]: duplicate entry for keys {keys} = {identity}")
                seen.add(identity)
        elif list_type == "set":
            reprs = [repr(item) for item in value]
            if len(set(reprs)) != len(reprs):
                problems.append(f"{where}: set items must be unique")
        return problems

    def _scalar(self, value: Any, schema: dict[str, Any], where: str) -> list[str]:
        problems = []
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                problems.append(f"{where}: longer than {schema['maxLength']} characters")
            if "minLength" in schema and len(value) < schema["minLength"]:
                problems.append(f"{where}: shorter than {schema['minLength']} characters")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = {"int32": INT32, "int64": INT64}.get(schema.get("format", ""), (None, None))
            if low is not None and not (low <= value <= high):
                problems.append(f"{where}: {value} is out of {schema['format']} range")
            if "minimum" in schema:
                exclusive = schema.get("exclusiveMinimum", False)
                if value < schema["minimum"] or (exclusive and value == schema["minimum"]):
                    problems.append(f"{where}: {value} is below the minimum {schema['minimum']}")
            if "maximum" in schema:
                exclusive = schema.get("exclusiveMaximum", False)
                if value > schema["maximum"] or (exclusive and value == schema["maximum"]):
                    problems.append(f"{where}: {value} is above the maximum {schema['maximum']}")
        return problems

    def _combined(self, keyword: str, value: Any, branches: Any, path: str, where: str) -> list[str]:
        if keyword == "not":
            return (
                [f"{where}: must not match the `not` schema"]
                if not self.validate(value, branches, path)
                else []
            )
        passed = sum(1 for branch in branches if not self.validate(value, branch, path))
        if keyword == "allOf" and passed != len(branches):
            return [f"{where}: does not match every allOf branch"]
        if keyword == "anyOf" and passed == 0:
            return [f"{where}: matches no anyOf branch"]
        if keyword == "oneOf" and passed != 1:
            return [f"{where}: must match exactly one oneOf branch, matches {passed}"]
        return []

    def _rules_problems(self, value: Any, rules: list[dict[str, Any]], where: str) -> list[str]:
        problems = []
        for rule in rules:
            compiled = self._rules.get(rule["rule"])
            if compiled is None:
                try:
                    compiled = compile_rule(rule["rule"])
                except CelUnsupported as error:
                    compiled = error
                self._rules[rule["rule"]] = compiled
            if isinstance(compiled, CelUnsupported):
                problems.append(f"{where}: cannot evaluate rule {rule['rule']!r} ({compiled})")
                continue
            if compiled.transition:
                continue
            self.tally.cel_rules += 1
            try:
                if not compiled.holds(value):
                    problems.append(f"{where}: {rule.get('message') or 'failed rule ' + rule['rule']}")
            except CelEvaluationError as error:
                problems.append(f"{where}: rule {rule['rule']!r} errors: {error}")
        return problems


def label_problems(labels: Any, path: str) -> list[str]:
    """Kubernetes label syntax: qualified-name keys, values of at most 63 label characters."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [f"{path}: must be a mapping"]
    problems = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(name) > 63 or not LABEL_NAME.match(name):
            problems.append(f"{path}: {key!r} is not a valid label key")
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            problems.append(f"{path}.{key}: {value!r} is not a valid label value")
    return problems


def iter_rules(schema: Any) -> Iterator[str]:
    """Every `x-kubernetes-validations` rule in a schema (to check the CEL subset covers them)."""
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            yield rule["rule"]
        for value in schema.values():
            yield from iter_rules(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from iter_rules(value)
