"""Render every manifest from one cluster config: `render_all(config) -> {path: text}`.

Paths are relative to infra/: `kuberay/<environment>/...` (one self-contained folder per environment:
`default` from the config as it is, and each of `kubernetes.overlays`, e.g. `dev` and `prod`) and
`monitoring/...` (the PodMonitor; the Grafana dashboard beside it is a checked-in file). Each
environment folder's kustomization lists its resources and nothing else, so `kubectl apply -k` works
on it and users can overlay it. Rendering reads only the config, so the same config gives the same
bytes on every machine.
"""

from __future__ import annotations

from typing import Any

from cluster.config import ClusterConfig
from cluster.k8s.batch_jobs import cluster_config_map, plain_cron_job, ray_cron_job, ray_job
from cluster.k8s.groups import apply_overlay, plan_worker_groups
from cluster.k8s.monitoring import pod_monitor
from cluster.k8s.ray_service import ray_service
from cluster.k8s.retrain_job import retrain_cron_job, retrain_rendered
from cluster.k8s.yamlio import comment_header, dump_documents, dump_yaml

KUBERAY = "kuberay"
MONITORING = "monitoring"
DEFAULT_ENVIRONMENT = "default"
KUSTOMIZATION_FILE = "kustomization.yaml"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
CONFIG_MAP_FILE = "configmap.qwen-cluster-config.yaml"
RAY_JOB_FILE = "ray-job.nightly-batch.yaml"
RAY_CRON_JOB_FILE = "ray-cronjob.nightly-batch.yaml"
PLAIN_CRON_JOB_FILE = "cronjob.nightly-batch.yaml"
RETRAIN_CRON_JOB_FILE = "ray-cronjob.router-retrain.yaml"
PURPOSES = {
    CONFIG_MAP_FILE: "The cluster config the batch jobs read.",
    RAY_JOB_FILE: "One-off run: kubectl create -f (generateName gives each run its own name).",
    RAY_CRON_JOB_FILE: "Needs the operator feature gate RayCronJob=true.",
    PLAIN_CRON_JOB_FILE: "Alternative to the RayCronJob for operators without its feature gate.",
    RETRAIN_CRON_JOB_FILE: "Nightly router retrain from shadow labels; needs the feature gate RayCronJob=true.",
}


def ray_service_file(config: ClusterConfig) -> str:
    """File name of the RayService (`ray-service.<name>.yaml`)."""
    return f"ray-service.{config.kubernetes.name}.yaml"


def environments(config: ClusterConfig) -> dict[str, ClusterConfig]:
    """The config of each environment folder: `default`, then every overlay by name."""
    envs = {DEFAULT_ENVIRONMENT: config}
    envs.update(
        {name: apply_overlay(config, env) for name, env in sorted(config.kubernetes.overlays.items())}
    )
    return envs


def manifest_documents(config: ClusterConfig) -> dict[str, list[dict[str, Any]]]:
    """One environment's manifests as data, by file name (kustomization excluded).

    Raises:
        K8sRenderError: when the config cannot give working manifests.
    """
    plans = plan_worker_groups(config)
    documents = {
        CONFIG_MAP_FILE: [cluster_config_map(config)],
        ray_service_file(config): [ray_service(config, plans)],
        RAY_JOB_FILE: [ray_job(config, plans)],
        RAY_CRON_JOB_FILE: [ray_cron_job(config, plans)],
        PLAIN_CRON_JOB_FILE: plain_cron_job(config, plans),
    }
    if retrain_rendered(config):
        documents[RETRAIN_CRON_JOB_FILE] = [retrain_cron_job(config, plans)]
    return documents


def kustomized_files(config: ClusterConfig) -> list[str]:
    """Files `kubectl apply -k` applies: the one-off RayJob is left for `kubectl create`."""
    scheduled = (
        RAY_CRON_JOB_FILE if config.kubernetes.batch.scheduler == "raycronjob" else PLAIN_CRON_JOB_FILE
    )
    files = [CONFIG_MAP_FILE, ray_service_file(config), scheduled]
    # The retrain is a RayCronJob only: without the operator's gate it is left for the user to apply.
    if retrain_rendered(config) and scheduled == RAY_CRON_JOB_FILE:
        files.append(RETRAIN_CRON_JOB_FILE)
    return files


def _header(config: ClusterConfig, purpose: str, environment: str | None = None) -> str:
    k8s = config.kubernetes
    source = f"the `{config.profile}` cluster config"
    if environment is not None:
        source += f", environment `{environment}`"
    return comment_header(
        [
            f"Rendered by `qwen-cluster render k8s` from {source}; do not edit.",
            f"KubeRay {k8s.kuberay_version}, Ray {k8s.ray_version}. {purpose}".rstrip(),
        ]
    )


def render_environment(name: str, config: ClusterConfig) -> dict[str, str]:
    """`kuberay/<name>/...`: the environment's manifests and a kustomization listing its resources."""
    folder = f"{KUBERAY}/{name}"
    files = {
        f"{folder}/{file}": dump_documents(docs, _header(config, PURPOSES.get(file, ""), name))
        for file, docs in manifest_documents(config).items()
    }
    kustomization = {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "resources": kustomized_files(config),
    }
    purpose = "Apply with `kubectl apply -k` on this folder; put your own overlay on top of it."
    files[f"{folder}/{KUSTOMIZATION_FILE}"] = _header(config, purpose, name) + dump_yaml(kustomization)
    return files


def render_monitoring(config: ClusterConfig) -> dict[str, str]:
    """`monitoring/podmonitor.<name>.yaml`, unless `kubernetes.monitoring.pod_monitor` is off."""
    if not config.kubernetes.monitoring.pod_monitor:
        return {}
    header = _header(config, "Needs the Prometheus Operator (monitoring.coreos.com CRDs).")
    return {f"{MONITORING}/podmonitor.{config.kubernetes.name}.yaml": header + dump_yaml(pod_monitor(config))}


def render_all(config: ClusterConfig) -> dict[str, str]:
    """Every rendered file, by path relative to infra/.

    Raises:
        K8sRenderError: when the config cannot give working manifests.
    """
    files: dict[str, str] = {}
    for name, env_config in environments(config).items():
        files.update(render_environment(name, env_config))
    return {**files, **render_monitoring(config)}
