"""Validate a rendered tree: each environment folder as `kubectl apply -k` would apply it, and monitoring.

Every document goes through its schema (`cluster.k8s.schemas`: CRDs with jsonschema and CEL, core
kinds with kubernetes-validate), KubeRay's operator rules, and then the cross-checks between the
manifests of one folder. A kustomization may list only files of its own folder.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cluster.k8s.consistency import batch_problems, ray_service_problems
from cluster.k8s.monitoring import dashboard_problems
from cluster.k8s.operator_rules import operator_problems
from cluster.k8s.render import KUBERAY, KUSTOMIZATION_FILE, KUSTOMIZE_API, MONITORING
from cluster.k8s.schemas import SchemaValidator
from cluster.k8s.yamlio import load_document, load_documents

EMBEDDED_RAY_JOB_KEY = "ray-job.yaml"
# What cross-checks raise when a manifest lacks a field they read (the schema has reported why).
READ_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _describe(document: Any) -> str:
    metadata = (document.get("metadata") or {}) if isinstance(document, dict) else {}
    name = metadata.get("name") or metadata.get("generateName") or "?"
    return f"{document.get('kind')}/{name}" if isinstance(document, dict) else "<not a mapping>"


class TreeValidator:
    """Validates manifests; `problems`, `tally` (from the schema validator) and `cross_checked` (manifest
    sets whose cross-checks ran) add up over every call."""

    def __init__(self, crds: dict[tuple[str, str], dict[str, Any]]):
        self.schemas = SchemaValidator(crds)
        self.tally = self.schemas.tally
        self.problems: list[str] = []
        self.files = self.cross_checked = 0
        # Environments share most documents byte for byte; each distinct one is checked once.
        self._seen: dict[str, list[str]] = {}

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def _add(self, where: str, problems: list[str]) -> None:
        self.problems += [f"{where}: {problem}" for problem in problems]

    def document_problems(self, document: Any) -> list[str]:
        """Schema and operator rules, and the same for a RayJob embedded in a ConfigMap."""
        if not isinstance(document, dict):
            return self.schemas.problems(document)
        key = json.dumps(document, sort_keys=True, default=str)
        if key not in self._seen:
            problems = self.schemas.problems(document)
            if not problems and str(document.get("apiVersion", "")).startswith("ray.io/"):
                problems = operator_problems(document)
            embedded = (document.get("data") or {}).get(EMBEDDED_RAY_JOB_KEY)
            if document.get("kind") == "ConfigMap" and isinstance(embedded, str):
                try:
                    job_problems = self.document_problems(load_document(embedded))
                except yaml.YAMLError as error:
                    job_problems = [f"not YAML: {error}"]
                problems += [f"data.{EMBEDDED_RAY_JOB_KEY}: {p}" for p in job_problems]
            self._seen[key] = problems
        return self._seen[key]

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
            for document in (d for d in documents if d.get("kind") == "RayService"):
                self._add(f"{label} {_describe(document)}", ray_service_problems(document))
            self._add(label, batch_problems(documents))
            self.cross_checked += 1
        except READ_ERRORS as error:
            self._add(label, [f"cross-checks could not read the manifests: {type(error).__name__}: {error}"])

    def _load(self, where: str, text: str) -> list[Any]:
        try:
            return load_documents(text)
        except yaml.YAMLError as error:
            self._add(where, [f"not YAML: {error}"])
            return []

    def check_folder(self, folder: str, files: dict[str, str]) -> None:
        """One environment folder (file name -> text): its kustomization and every manifest in it."""
        documents = {name: self._load(f"{folder}/{name}", text) for name, text in sorted(files.items())}
        kustomization = documents.pop(KUSTOMIZATION_FILE, None)
        self._add(f"{folder}/{KUSTOMIZATION_FILE}", kustomization_problems(kustomization, set(documents)))
        self.check_set(folder, [d for docs in documents.values() for d in docs])

    def validate(self, files: dict[str, str]) -> TreeValidator:
        """Check a whole rendering (paths relative to infra/); returns self."""
        self.files = len(files)
        folders: dict[str, dict[str, str]] = {}
        for path, text in sorted(files.items()):
            top, *rest = path.split("/")
            if top == KUBERAY and len(rest) == 2:
                folders.setdefault(f"{KUBERAY}/{rest[0]}", {})[rest[1]] = text
            elif top == KUBERAY:
                self._add(path, ["not in an environment folder (kuberay/<environment>/<file>)"])
            elif top == MONITORING and path.endswith(".json"):
                try:
                    self._add(path, dashboard_problems(json.loads(text)))
                except json.JSONDecodeError as error:
                    self._add(path, [f"not JSON: {error}"])
            elif top == MONITORING:
                self.check_set(path, self._load(path, text))
        for folder, folder_files in folders.items():
            self.check_folder(folder, folder_files)
        return self


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
    problems += [f"resources: {r} is not a manifest of this folder" for r in resources if r not in names]
    return problems + ([] if resources else ["resources: lists nothing"])


def validate_rendered(files: dict[str, str], crds: dict[tuple[str, str], dict[str, Any]]) -> TreeValidator:
    """Validate a rendering (`render_all` output, or files read back from disk)."""
    return TreeValidator(crds).validate(files)
