"""Validate a rendered tree: each environment folder as `kubectl apply -k` would apply it, and monitoring.

Every document goes through its schema (`cluster.k8s.schemas`: CRDs with jsonschema and CEL, core
kinds with kubernetes-validate), KubeRay's operator rules, and then the cross-checks between the
manifests of one folder. A kustomization may list only files of its own folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from cluster.k8s.consistency import batch_problems, ray_service_problems
from cluster.k8s.layout import KUBERAY, KUSTOMIZATION_FILE, KUSTOMIZE_API, MONITORING
from cluster.k8s.monitoring import dashboard_problems
from cluster.k8s.operator_rules import operator_problems
from cluster.k8s.schemas import SchemaValidator, Tally
from cluster.k8s.yamlio import load_document, load_documents

RAY_GROUP = "ray.io"
EMBEDDED_RAY_JOB_KEY = "ray-job.yaml"


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
    """Validates manifests; `report` collects the problems of every call."""

    def __init__(self, crds: dict[tuple[str, str], dict[str, Any]]):
        self.schemas = SchemaValidator(crds)
        self.report = ValidationReport(tally=self.schemas.tally)
        # Environments share most documents byte for byte; each distinct one is checked once.
        self._seen: dict[str, list[str]] = {}

    def _add(self, where: str, problems: list[str]) -> None:
        self.report.problems += [f"{where}: {problem}" for problem in problems]

    def document_problems(self, document: Any) -> list[str]:
        """Schema and operator rules, and the same for a RayJob embedded in a ConfigMap."""
        if not isinstance(document, dict):
            return self.schemas.problems(document)
        key = json.dumps(document, sort_keys=True, default=str)
        if key in self._seen:
            return self._seen[key]
        problems = self.schemas.problems(document)
        if not problems and str(document.get("apiVersion", "")).split("/")[0] == RAY_GROUP:
            problems = operator_problems(document)
        embedded = (document.get("data") or {}).get(EMBEDDED_RAY_JOB_KEY)
        if document.get("kind") == "ConfigMap" and isinstance(embedded, str):
            try:
                job = load_document(embedded)
                problems += [f"data.{EMBEDDED_RAY_JOB_KEY}: {p}" for p in self.document_problems(job)]
            except yaml.YAMLError as error:
                problems.append(f"data.{EMBEDDED_RAY_JOB_KEY}: not YAML: {error}")
        self._seen[key] = problems
        return problems

    def check_set(self, label: str, documents: list[Any]) -> None:
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
                    where = f"{label} {_describe(document)}"
                    self._add(where, ray_service_problems(document, self.report.tally))
            self._add(label, batch_problems(documents, self.report.tally))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            self._add(label, [f"cross-checks could not read the manifests: {type(error).__name__}: {error}"])

    def check_folder(self, folder: str, files: dict[str, str]) -> None:
        """One environment folder (file name -> text): its kustomization and every manifest in it."""
        documents: dict[str, list[Any]] = {}
        for name, text in sorted(files.items()):
            try:
                documents[name] = load_documents(text)
            except yaml.YAMLError as error:
                self._add(f"{folder}/{name}", [f"not YAML: {error}"])
        kustomization = documents.pop(KUSTOMIZATION_FILE, None)
        self._add(f"{folder}/{KUSTOMIZATION_FILE}", kustomization_problems(kustomization, set(documents)))
        self.check_set(folder, [d for docs in documents.values() for d in docs])

    def validate(self, files: dict[str, str]) -> ValidationReport:
        """Check a whole rendering (paths relative to infra/)."""
        self.report.files = len(files)
        folders: dict[str, dict[str, str]] = {}
        for path, text in files.items():
            parts = path.split("/")
            if parts[0] == KUBERAY and len(parts) == 3:
                folders.setdefault(f"{KUBERAY}/{parts[1]}", {})[parts[2]] = text
            elif parts[0] == KUBERAY:
                self._add(path, ["not in an environment folder (kuberay/<environment>/<file>)"])
        for folder, folder_files in sorted(folders.items()):
            self.check_folder(folder, folder_files)
        for path, text in sorted(files.items()):
            if not path.startswith(f"{MONITORING}/"):
                continue
            try:
                if path.endswith(".json"):
                    self._add(path, dashboard_problems(json.loads(text)))
                else:
                    for document in load_documents(text):
                        self._add(f"{path} {_describe(document)}", self.document_problems(document))
            except (yaml.YAMLError, json.JSONDecodeError) as error:
                self._add(path, [f"not parseable: {error}"])
        return self.report


def kustomization_problems(kustomization: list[Any] | None, names: set[str]) -> list[str]:
    """A plain kustomization: apiVersion, kind and resources of its own folder, nothing else."""
    if not kustomization:
        return ["missing"]
    data = kustomization[0]
    if not isinstance(data, dict) or (data.get("apiVersion"), data.get("kind")) != (
        KUSTOMIZE_API,
        "Kustomization",
    ):
        return [f"must be a {KUSTOMIZE_API} Kustomization"]
    problems = [
        f"{key}: the folder is self-contained; only resources are listed"
        for key in data
        if key not in ("apiVersion", "kind", "resources")
    ]
    resources = data.get("resources") or []
    if not resources:
        problems.append("resources: lists nothing")
    problems += [f"resources: {r} is not a manifest of this folder" for r in resources if r not in names]
    return problems


def validate_rendered(files: dict[str, str], crds: dict[tuple[str, str], dict[str, Any]]) -> ValidationReport:
    """Validate a rendering (`render_all` output, or files read back from disk)."""
    return TreeValidator(crds).validate(files)
