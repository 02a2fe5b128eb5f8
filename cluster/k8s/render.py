"""Render every manifest from one cluster config: `render_all(config) -> {path: text}`.

Paths are relative to infra/: `kuberay/base/...` (the KubeRay resources and their kustomization),
`kuberay/overlays/<name>/...` (dev, prod) and `monitoring/...` (PodMonitor, Grafana dashboard). Rendering
reads only the config, so the same config gives the same bytes on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster.config import ClusterConfig
from cluster.k8s.batch_jobs import cluster_config_map, plain_cron_job, ray_cron_job, ray_job
from cluster.k8s.groups import apply_overlay, plan_worker_groups
from cluster.k8s.kustomize import kustomization, overlay_patches, patch_file_name, patch_target
from cluster.k8s.layout import (
    BASE,
    CONFIG_MAP_FILE,
    KUBERAY,
    KUSTOMIZATION_FILE,
    MONITORING,
    OVERLAY_BASE_REFERENCE,
    OVERLAYS,
    PLAIN_CRON_JOB_FILE,
    RAY_CRON_JOB_FILE,
    RAY_JOB_FILE,
)
from cluster.k8s.monitoring import grafana_dashboard, pod_monitor
from cluster.k8s.ray_service import ray_service
from cluster.k8s.yamlio import comment_header, dump_documents, dump_json, dump_yaml


def ray_service_file(config: ClusterConfig) -> str:
    """File name of the RayService (`ray-service.<name>.yaml`)."""
    return f"ray-service.{config.kubernetes.name}.yaml"


def manifest_documents(config: ClusterConfig) -> dict[str, list[dict[str, Any]]]:
    """The KubeRay-directory manifests as data, by file name (kustomizations excluded).

    Raises:
        K8sRenderError: when the config cannot give working manifests.
    """
    plans = plan_worker_groups(config)
    return {
        CONFIG_MAP_FILE: [cluster_config_map(config)],
        ray_service_file(config): [ray_service(config, plans)],
        RAY_JOB_FILE: [ray_job(config, plans)],
        RAY_CRON_JOB_FILE: [ray_cron_job(config, plans)],
        PLAIN_CRON_JOB_FILE: plain_cron_job(config, plans),
    }


def kustomized_files(config: ClusterConfig) -> list[str]:
    """Files the base kustomization applies: the one-off RayJob is left for `kubectl create`."""
    scheduled = (
        RAY_CRON_JOB_FILE if config.kubernetes.batch.scheduler == "raycronjob" else PLAIN_CRON_JOB_FILE
    )
    return [CONFIG_MAP_FILE, ray_service_file(config), scheduled]


def _header(config: ClusterConfig, purpose: str) -> str:
    k8s = config.kubernetes
    return comment_header(
        [
            f"Rendered by `qwen-cluster render k8s` from the `{config.profile}` cluster config; do not edit.",
            f"KubeRay {k8s.kuberay_version}, Ray {k8s.ray_version}. {purpose}",
        ]
    )


PURPOSES = {
    CONFIG_MAP_FILE: "The cluster config the batch jobs read.",
    RAY_JOB_FILE: "One-off run: kubectl create -f (generateName gives each run its own name).",
    RAY_CRON_JOB_FILE: "Needs the operator feature gate RayCronJob=true.",
    PLAIN_CRON_JOB_FILE: "Alternative to the RayCronJob for operators without its feature gate.",
}


def _overlay_files(config: ClusterConfig, base_docs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    files: dict[str, str] = {}
    resources = kustomized_files(config)
    for name, overlay in sorted(config.kubernetes.overlays.items()):
        overlay_docs = manifest_documents(apply_overlay(config, overlay))
        entries = []
        for document, ops in overlay_patches(base_docs, overlay_docs, resources):
            patch_name = patch_file_name(document)
            header = _header(config, f"JSON patch of the `{name}` overlay.")
            files[f"{OVERLAYS}/{name}/{patch_name}"] = header + dump_yaml(ops)
            entries.append({"path": patch_name, "target": patch_target(document)})
        text = dump_yaml(kustomization(overlay.namespace, [OVERLAY_BASE_REFERENCE], entries))
        files[f"{OVERLAYS}/{name}/{KUSTOMIZATION_FILE}"] = _header(config, f"Overlay `{name}`.") + text
    return files


def render_kuberay(config: ClusterConfig) -> dict[str, str]:
    """`kuberay/...` files: manifests and kustomization in base/, and the overlays."""
    documents = manifest_documents(config)
    files = {
        f"{BASE}/{name}": dump_documents(docs, _header(config, PURPOSES.get(name, "")))
        for name, docs in documents.items()
    }
    base = kustomization(config.kubernetes.namespace, kustomized_files(config))
    files[f"{BASE}/{KUSTOMIZATION_FILE}"] = _header(config, "Base; overlays in ../overlays/.") + dump_yaml(
        base
    )
    files.update(_overlay_files(config, documents))
    return files


def render_monitoring(config: ClusterConfig) -> dict[str, str]:
    """`monitoring/...` files: the PodMonitor and the Grafana dashboard."""
    files = {f"{MONITORING}/grafana-dashboard.qwen.json": dump_json(grafana_dashboard())}
    if config.kubernetes.monitoring.pod_monitor:
        header = _header(config, "Needs the Prometheus Operator (monitoring.coreos.com CRDs).")
        files[f"{MONITORING}/podmonitor.{config.kubernetes.name}.yaml"] = header + dump_yaml(
            pod_monitor(config)
        )
    return files


def render_all(config: ClusterConfig) -> dict[str, str]:
    """Every rendered file, by path relative to infra/.

    Raises:
        K8sRenderError: when the config cannot give working manifests.
    """
    return {**render_kuberay(config), **render_monitoring(config)}


def split_destinations(files: dict[str, str], kuberay_dir: Path, monitoring_dir: Path) -> dict[Path, str]:
    """Map `kuberay/...` paths under `kuberay_dir` and `monitoring/...` paths under `monitoring_dir`."""
    placed: dict[Path, str] = {}
    for path, text in files.items():
        top, _, rest = path.partition("/")
        root = kuberay_dir if top == KUBERAY else monitoring_dir
        placed[root / rest] = text
    return placed


def write_files(placed: dict[Path, str]) -> list[Path]:
    """Write files whose bytes changed; returns the paths written."""
    written = []
    for path, text in sorted(placed.items()):
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(placed: dict[Path, str]) -> list[str]:
    """Paths whose committed bytes differ from a fresh rendering (missing files included)."""
    return [
        str(path)
        for path, text in sorted(placed.items())
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
