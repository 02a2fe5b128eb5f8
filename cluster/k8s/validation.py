"""Validate a rendered tree: every manifest, every overlay (patches applied), monitoring files.

Each document goes through the strict schema validator (KubeRay CRDs for Ray kinds, small schemas
for the core kinds), KubeRay's operator rules, and the cross-checks between manifests. Overlays are
built the way kustomize builds them (base resources, JSON patches, namespace) and checked the same
way, so a patch that breaks a manifest fails here too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from cluster.k8s.consistency import batch_problems, ray_service_problems
from cluster.k8s.core_schemas import core_schemas, json_patch_schema, kustomization_schema
from cluster.k8s.layout import BASE, KUSTOMIZATION_FILE, MONITORING, OVERLAY_BASE_REFERENCE, OVERLAYS
from cluster.k8s.monitoring import QWEN_METRICS, SERVE_METRICS
from cluster.k8s.operator_rules import operator_problems
from cluster.k8s.patches import PatchError, apply_json_patch
from cluster.k8s.schema import CrdCatalog, StructuralValidator, Tally
from cluster.k8s.yamlio import load_document, load_documents

RAY_GROUP = "ray.io"
EMBEDDED_RAY_JOB_KEY = "ray-job.yaml"
DASHBOARD_TOPICS = ("requests", "latency", "first token", "tokens", "routes")


@dataclass
class ValidationReport:
    """Problems found, and how much was checked."""

    problems: list[str] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    files: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def _describe(document: Any) -> str:
    if not isinstance(document, dict):
        return "<not a mapping>"
    metadata = document.get("metadata") or {}
    return f"{document.get('kind')}/{metadata.get('name') or metadata.get('generateName') or '?'}"


class TreeValidator:
    """Validates the files of one rendering (paths relative to infra/).

    After `validate`, `overlays` holds each overlay's resources as kustomize would build them.
    """

    def __init__(self, catalog: CrdCatalog):
        self.catalog = catalog
        self.schemas = core_schemas(catalog)
        self.validator = StructuralValidator()
        self.report = ValidationReport(tally=self.validator.tally)
        self.overlays: dict[str, list[Any]] = {}

    def _add(self, where: str, problems: list[str]) -> None:
        self.report.problems += [f"{where}: {problem}" for problem in problems]

    def document_problems(self, document: Any) -> list[str]:
        """Schema, operator rules, and any RayJob embedded in a ConfigMap."""
        if not isinstance(document, dict):
            return ["a manifest must be a mapping"]
        api_version = str(document.get("apiVersion", ""))
        if api_version.split("/")[0] == RAY_GROUP:
            problems = self.validator.validate_resource(document, self.catalog)
            return problems + (operator_problems(document) if not problems else [])
        schema = self.schemas.get((api_version, str(document.get("kind"))))
        if schema is None:
            return [f"no schema for apiVersion {api_version!r}, kind {document.get('kind')!r}"]
        problems = self.validator.validate_resource(
            document, CrdCatalog({(api_version, document["kind"]): schema})
        )
        if document.get("kind") == "ConfigMap" and EMBEDDED_RAY_JOB_KEY in document.get("data", {}):
            try:
                embedded = load_document(document["data"][EMBEDDED_RAY_JOB_KEY])
            except yaml.YAMLError as error:
                return problems + [f"data.{EMBEDDED_RAY_JOB_KEY}: not YAML: {error}"]
            problems += [f"data.{EMBEDDED_RAY_JOB_KEY}: {p}" for p in self.document_problems(embedded)]
        return problems

    def check_set(self, label: str, documents: list[dict[str, Any]]) -> None:
        """Validate documents one by one, then cross-check the set (only once every document is valid)."""
        valid = True
        for document in documents:
            problems = self.document_problems(document)
            self._add(f"{label} {_describe(document)}", problems)
            valid = valid and not problems
        if not valid:
            return
        try:
            for document in documents:
                if document.get("kind") == "RayService":
                    self._add(
                        f"{label} {_describe(document)}", ray_service_problems(document, self.report.tally)
                    )
            self._add(label, batch_problems(documents, self.report.tally))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            self._add(label, [f"cross-checks could not read the manifests: {type(error).__name__}: {error}"])

    def validate(self, files: dict[str, str]) -> ValidationReport:
        """Check a whole rendering."""
        self.report.files = len(files)
        base_files = _under(files, BASE)
        manifests: dict[str, list[Any]] = {}
        for name, text in base_files.items():
            if name == KUSTOMIZATION_FILE:
                continue
            try:
                manifests[name] = load_documents(text)
            except yaml.YAMLError as error:
                self._add(f"{BASE}/{name}", [f"not YAML: {error}"])
        self.check_set(BASE, [d for docs in manifests.values() for d in docs])
        base = self._base_kustomized(base_files.get(KUSTOMIZATION_FILE), manifests)
        overlay_files = _under(files, OVERLAYS)
        for name in sorted({path.split("/")[0] for path in overlay_files}):
            overlay = self._overlay(name, _under(overlay_files, name), base)
            if overlay is not None:
                self.overlays[name] = overlay
                self.check_set(f"{OVERLAYS}/{name}", overlay)
        self._monitoring(_under(files, MONITORING))
        return self.report

    def _kustomization(self, where: str, text: str | None) -> dict[str, Any] | None:
        if text is None:
            self._add(where, ["missing"])
            return None
        try:
            data = load_document(text)
        except yaml.YAMLError as error:
            self._add(where, [f"not YAML: {error}"])
            return None
        problems = self.validator.validate(data, kustomization_schema(), "")
        self._add(where, problems)
        return None if problems else data

    def _base_kustomized(self, text: str | None, manifests: dict[str, list[Any]]) -> tuple[str, list[Any]]:
        where = f"{BASE}/{KUSTOMIZATION_FILE}"
        data = self._kustomization(where, text)
        if data is None:
            return "", []
        documents = []
        for resource in data["resources"]:
            if resource not in manifests:
                self._add(where, [f"resource {resource} is not a rendered manifest"])
                continue
            documents += manifests[resource]
        return data.get("namespace", ""), documents

    def _overlay(self, name: str, files: dict[str, str], base: tuple[str, list[Any]]) -> list[Any] | None:
        where = f"{OVERLAYS}/{name}"
        data = self._kustomization(f"{where}/{KUSTOMIZATION_FILE}", files.get(KUSTOMIZATION_FILE))
        if data is None:
            return None
        if data["resources"] != [OVERLAY_BASE_REFERENCE]:
            self._add(where, [f"resources must be [{OVERLAY_BASE_REFERENCE!r}], got {data['resources']}"])
        documents = [dict(d) for d in base[1]]
        for entry in data.get("patches", []):
            text = files.get(entry["path"])
            if text is None:
                self._add(where, [f"patch file {entry['path']} is missing"])
                continue
            try:
                ops = load_document(text)
            except yaml.YAMLError as error:
                self._add(where, [f"{entry['path']}: not YAML: {error}"])
                continue
            problems = self.validator.validate(ops, json_patch_schema(), entry["path"])
            matches = [i for i, d in enumerate(documents) if _targets(entry["target"], d)]
            if len(matches) != 1:
                problems.append(f"{entry['path']}: target {entry['target']} matches {len(matches)} resources")
            if problems:
                self._add(where, problems)
                continue
            try:
                documents[matches[0]] = apply_json_patch(documents[matches[0]], ops)
            except (PatchError, IndexError, ValueError) as error:
                self._add(where, [f"{entry['path']}: {error}"])
        return [_with_namespace(d, data.get("namespace"), base[0]) for d in documents]

    def _monitoring(self, files: dict[str, str]) -> None:
        for name, text in sorted(files.items()):
            where = f"{MONITORING}/{name}"
            if name.endswith(".json"):
                self._add(where, dashboard_problems(json.loads(text)))
            else:
                try:
                    documents = load_documents(text)
                except yaml.YAMLError as error:
                    self._add(where, [f"not YAML: {error}"])
                    continue
                for document in documents:
                    self._add(f"{where} {_describe(document)}", self.document_problems(document))


def _under(files: dict[str, str], folder: str) -> dict[str, str]:
    prefix = folder.rstrip("/") + "/"
    return {path[len(prefix) :]: text for path, text in files.items() if path.startswith(prefix)}


def _targets(target: dict[str, str], document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    group, _, version = str(document.get("apiVersion", "")).rpartition("/")
    return (
        target.get("kind") == document.get("kind")
        and target.get("name") == (document.get("metadata") or {}).get("name")
        and target.get("group", "") == group
        and target.get("version", version) == version
    )


def _with_namespace(document: Any, namespace: str | None, base_namespace: str) -> Any:
    """What kustomize's namespace transformer does: resources and ServiceAccount subjects move."""
    if not namespace or not isinstance(document, dict):
        return document
    document = json.loads(json.dumps(document))
    document.setdefault("metadata", {})["namespace"] = namespace
    for subject in document.get("subjects", []):
        if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (None, base_namespace):
            subject["namespace"] = namespace
    return document


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every query reads a known metric; the panels cover requests, latency, TTFT, tokens and routes."""
    known = set(QWEN_METRICS) | set(SERVE_METRICS)
    problems = []
    titles = []
    for panel in dashboard.get("panels", []):
        titles.append(panel.get("title", "").lower())
        for target in panel.get("targets", []):
            for metric in re.findall(r"\bray_[a-z0-9_]+", target.get("expr", "")):
                if metric.removesuffix("_bucket") not in known:
                    problems.append(f"panel {panel.get('title')!r} reads unknown metric {metric}")
    problems += [
        f"no panel about {topic}" for topic in DASHBOARD_TOPICS if not any(topic in t for t in titles)
    ]
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(set(ids)) != len(ids):
        problems.append("panel ids must be unique")
    return problems


def validate_rendered(files: dict[str, str], catalog: CrdCatalog) -> ValidationReport:
    """Validate a rendering (`render_all` output, or files read back from disk)."""
    return TreeValidator(catalog).validate(files)
