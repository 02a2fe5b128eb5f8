"""Schema validation of single manifests with the ecosystem's libraries.

Custom resources (the KubeRay CRDs, the Prometheus Operator's PodMonitor) are checked by `jsonschema`
against each CRD's `openAPIV3Schema`, made strict the way `kubectl apply` with strict field
validation is: every object that lists `properties` and neither preserves unknown fields nor names
`additionalProperties` refuses other fields. `x-kubernetes-validations` rules run with `cel-python`
(transition rules, which need the stored object, are skipped as on create), `x-kubernetes-list-type`
map keys and set items must be unique, and `metadata` is Kubernetes' ObjectMeta. Core kinds
(ConfigMap, CronJob, ServiceAccount, Role, RoleBinding) use `kubernetes-validate`'s strict schemas.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from cluster.config import default_cache_dir

CRD_DIR_ENV = "QWEN_KUBERAY_CRDS"
# Kubernetes version of the core-kind schemas (kubernetes-validate ships one folder per release).
KUBERNETES_VERSION = "1.33.0"
DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def project_root() -> Path:
    """The repository (or source tree) this package runs from: where `infra/` lives."""
    return Path(__file__).resolve().parents[2]


def vendored_crd_dir() -> Path:
    """CRDs kept in this repository (`infra/crds/`): KubeRay v1.7.0's four and the PodMonitor's."""
    return project_root() / "infra" / "crds"


def default_crd_dir() -> Path:
    """The KubeRay CRDs to validate against: `$QWEN_KUBERAY_CRDS` (another KubeRay release), else the
    vendored ones."""
    if os.environ.get(CRD_DIR_ENV):
        return Path(os.environ[CRD_DIR_ENV])
    return vendored_crd_dir()


def strict_schema(schema: Any) -> Any:
    """A copy of a structural schema where unknown fields are errors and `nullable` admits null."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if strict.get("nullable") and isinstance(strict.get("type"), str):
        strict["type"] = [strict["type"], "null"]
    return strict


def _crd_documents(path: Path) -> list[Any]:
    """The documents of a CRD file, through a JSON copy in the cache folder keyed by the file's hash.

    Parsing the 4 MB of KubeRay CRDs as YAML costs about 2 s even with libyaml; JSON about 0.1 s.
    """
    data = path.read_bytes()
    cached = default_cache_dir() / "crd-json" / f"{hashlib.sha256(data).hexdigest()[:40]}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = [doc for doc in yaml.load_all(data, Loader=loader) if doc]
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(documents), encoding="utf-8")
    except OSError:
        pass  # a read-only cache only costs time
    return documents


def load_crds(*crd_dirs: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """`(apiVersion, kind) -> openAPIV3Schema` of every served version of the CRDs in `crd_dirs`.

    Raises:
        FileNotFoundError: when the folders hold no CRD.
    """
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(p for folder in crd_dirs for p in folder.glob("*.yaml")):
        for crd in _crd_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        raise FileNotFoundError(f"no CustomResourceDefinition found in {', '.join(map(str, crd_dirs))}")
    return schemas


@dataclass
class Tally:
    """How much a validation run checked."""

    documents: int = 0
    cel_rules: int = 0


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]):
    """`x-kubernetes-list-type`: map entries unique by their keys (defaults filled in), set items unique."""
    if not isinstance(instance, list) or list_type not in ("map", "set"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    defaults = {k: v.get("default") for k, v in schema.get("items", {}).get("properties", {}).items()}
    seen: set[str] = set()
    for index, item in enumerate(instance):
        if list_type == "map" and isinstance(item, dict):
            identity = json.dumps([item.get(key, defaults.get(key)) for key in keys])
        else:
            identity = json.dumps(item, sort_keys=True)
        if identity in seen:
            yield jsonschema.ValidationError(f"item {index} repeats {keys or 'a set item'}: {identity}")
        seen.add(identity)


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _described(error: jsonschema.ValidationError) -> list[str]:
    path = _path(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        return [
            f"{_path([*error.absolute_path, key])}: unknown field"
            for key in error.instance
            if key not in known
        ]
    return [f"{path or '<root>'}: {error.message}"[:300]]


def metadata_problems(metadata: Any) -> list[str]:
    """What the API server checks in ObjectMeta beyond its schema: name syntax and label syntax."""
    if not isinstance(metadata, dict):
        return ["metadata: required mapping is missing"]
    problems = []
    name, generate = metadata.get("name"), metadata.get("generateName")
    if not name and not generate:
        problems.append("metadata: name or generateName is required")
    if isinstance(name, str) and not (len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
        problems.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    if isinstance(generate, str) and not DNS1123_SUBDOMAIN.match(generate.rstrip("-") or "-"):
        problems.append(f"metadata.generateName: {generate!r} is not a DNS-1123 prefix")
    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and not DNS1123_LABEL.match(namespace):
        problems.append(f"metadata.namespace: {namespace!r} is not a DNS-1123 label")
    labels = metadata.get("labels")
    for key, value in (labels if isinstance(labels, dict) else {}).items():
        prefix, _, label = str(key).rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or len(label) > 63 or not LABEL_NAME.match(label):
            problems.append(f"metadata.labels: {key!r} is not a valid label key")
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            problems.append(f"metadata.labels.{key}: {value!r} is not a valid label value")
    return problems


class SchemaValidator:
    """Validates single manifests: CRD kinds with jsonschema and CEL, core kinds with kubernetes-validate."""

    def __init__(self, crds: dict[tuple[str, str], dict[str, Any]]):
        """Raises ModuleNotFoundError without the `k8s` extra (cel-python, kubernetes-validate)."""
        import celpy

        self._celpy = celpy
        self.crds = crds
        self.tally = Tally()
        self._core_dir = resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema", f"v{KUBERNETES_VERSION}-local-strict"
        )
        definitions = json.loads(self._core_dir.joinpath("_definitions.json").read_text(encoding="utf-8"))
        self._registry = Registry().with_resource(DEFINITIONS, Resource.from_contents(definitions))
        self._programs: dict[str, Any] = {}
        self._validators: dict[tuple[str, str], Any] = {}
        formats = jsonschema.FormatChecker(formats=())
        for name, (low, high) in INT_RANGES.items():
            formats.checks(name)(
                lambda value, low=low, high=high: not isinstance(value, int) or low <= value <= high
            )
        self._crd_class = jsonschema.validators.extend(
            jsonschema.Draft4Validator,
            {"x-kubernetes-validations": self._cel_rules, "x-kubernetes-list-type": _list_type},
        )
        self._formats = formats

    def _cel_rules(self, validator: Any, rules: list[dict[str, Any]], instance: Any, schema: dict[str, Any]):
        celpy = self._celpy
        for rule in rules:
            text = rule["rule"]
            if "oldSelf" in text:  # a transition rule: it needs the stored object, so not on create
                continue
            if text not in self._programs:
                environment = celpy.Environment()
                try:
                    self._programs[text] = environment.program(environment.compile(text))
                except celpy.CELParseError as error:
                    self._programs[text] = error
            if isinstance(self._programs[text], celpy.CELParseError):
                yield jsonschema.ValidationError(f"rule {text!r} does not compile: {self._programs[text]}")
                continue
            self.tally.cel_rules += 1
            try:
                result = self._programs[text].evaluate({"self": celpy.json_to_cel(instance)})
            except celpy.CELEvalError as error:
                result = error
            if isinstance(result, celpy.CELEvalError):
                yield jsonschema.ValidationError(f"rule {text!r} errors: {result.args[0]}")
            elif not result:
                yield jsonschema.ValidationError(rule.get("message") or f"failed rule {text}")

    def _validator(self, api_version: str, kind: str) -> Any | None:
        key = (api_version, kind)
        if key not in self._validators:
            if key in self.crds:
                # Made strict on first use: only the kinds rendered pay for the copy.
                schema = strict_schema(self.crds[key])
                # The API server checks metadata as ObjectMeta; a CRD leaves it as a bare object.
                schema["properties"]["metadata"] = {"$ref": OBJECT_META}
                self._validators[key] = self._crd_class(
                    schema, registry=self._registry, format_checker=self._formats
                )
            else:
                # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json
                group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
                name = f"{kind.lower()}-{group}"
                path = self._core_dir.joinpath(f"{name}.json")
                known = re.fullmatch(r"[a-z0-9-]+", name) and path.is_file()
                schema = json.loads(path.read_text(encoding="utf-8")) if known else None
                self._validators[key] = schema and jsonschema.Draft202012Validator(
                    schema, registry=self._registry
                )
        return self._validators[key]

    def problems(self, document: Any) -> list[str]:
        """Schema problems of one manifest, each `dotted.path: message`."""
        if not isinstance(document, dict):
            return ["<root>: a manifest must be a mapping"]
        api_version, kind = str(document.get("apiVersion")), str(document.get("kind"))
        validator = self._validator(api_version, kind)
        if validator is None:
            return [f"<root>: no schema for apiVersion {api_version!r}, kind {kind!r}"]
        self.tally.documents += 1
        found = [line for error in validator.iter_errors(document) for line in _described(error)]
        return found + metadata_problems(document.get("metadata"))
