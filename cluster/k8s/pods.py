"""Ray cluster specs (head group and worker groups) shared by the RayService and the batch jobs.

Every Ray container gets the same image, Secret-backed environment, cache and shared-memory
volumes, metrics ports and explicit probes. The probes are the checks KubeRay would inject (raylet
and GCS health; on serving workers also the Serve proxy), written out so thresholds are ours and
visible in the manifest.
"""

from __future__ import annotations

from typing import Any, Literal

from cluster.config import ClusterConfig
from cluster.k8s.groups import GroupPlan
from cluster.local import GRPC_MESSAGE_LIMIT_ENV, SERVE_ENV_DEFAULTS

Workload = Literal["serve", "batch"]

GCS_PORT = 6379
CLIENT_PORT = 10001
AUTOSCALER_METRICS_PORT = 44217
DASHBOARD_METRICS_PORT = 44227
PART_OF = "qwen-cluster"


def resource_labels(component: str) -> dict[str, str]:
    """Labels on every rendered resource and pod (the PodMonitor selects on `part-of`)."""
    return {
        "app.kubernetes.io/name": "qwen-cluster",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def _pod_metadata(config: ClusterConfig, component: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": resource_labels(component)}
    monitoring = config.kubernetes.monitoring
    if monitoring.prometheus_annotations:
        metadata["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(monitoring.metrics_port),
            "prometheus.io/path": "/metrics",
        }
    return metadata


def container_env(config: ClusterConfig) -> list[dict[str, Any]]:
    """Secret-backed variables, the cache locations, then `extra_env` by name."""
    k8s = config.kubernetes
    env: list[dict[str, Any]] = [
        {
            "name": item.env,
            "valueFrom": {"secretKeyRef": {"name": item.secret, "key": item.key, "optional": item.optional}},
        }
        for item in k8s.secret_env
    ]
    env.append({"name": "HF_HOME", "value": k8s.hf_home})
    env.append({"name": "QWEN_CLUSTER_CACHE", "value": k8s.cache_dir})
    if GRPC_MESSAGE_LIMIT_ENV not in k8s.extra_env:
        # Same reason as for local clusters: requests with inline images exceed gRPC's 4 MiB default.
        env.append({"name": GRPC_MESSAGE_LIMIT_ENV, "value": SERVE_ENV_DEFAULTS[GRPC_MESSAGE_LIMIT_ENV]})
    env += [{"name": name, "value": k8s.extra_env[name]} for name in sorted(k8s.extra_env)]
    return env


def _volumes(config: ClusterConfig, workload: Workload) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    k8s = config.kubernetes
    cache: dict[str, Any] = {"name": "cache", "emptyDir": {"sizeLimit": k8s.cache_size_limit}}
    if k8s.cache_volume_claim:
        cache = {"name": "cache", "persistentVolumeClaim": {"claimName": k8s.cache_volume_claim}}
    # Ray's object store lives in /dev/shm; the container default of 64 MiB would push it to disk.
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}, cache]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "cache", "mountPath": k8s.cache_mount_path}]
    if workload == "batch":
        volumes.append({"name": "qwen-config", "configMap": {"name": k8s.config_map_name}})
        mounts.append({"name": "qwen-config", "mountPath": k8s.config_mount_path, "readOnly": True})
    return volumes, mounts


def _wget_health(port: int, path: str, timeout: int) -> str:
    return f"wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path.lstrip('/')} | grep success"


def _probe(command: str, timeout: int, failure_threshold: int, config: ClusterConfig) -> dict[str, Any]:
    probes = config.kubernetes.probes
    return {
        "exec": {"command": ["bash", "-c", command]},
        "initialDelaySeconds": probes.initial_delay_seconds,
        "periodSeconds": probes.period_seconds,
        "timeoutSeconds": timeout,
        "successThreshold": 1,
        "failureThreshold": failure_threshold,
    }


def container_probes(
    config: ClusterConfig, node: Literal["head", "worker"], workload: Workload
) -> dict[str, Any]:
    """`readinessProbe` and `livenessProbe` of a Ray container."""
    probes = config.kubernetes.probes
    alive = _wget_health(probes.raylet_health_port, "api/local_raylet_healthz", probes.timeout_seconds)
    ready, timeout, threshold = alive, probes.timeout_seconds, probes.readiness_failure_threshold
    if node == "head":
        gcs = _wget_health(probes.dashboard_port, "api/gcs_healthz", probes.timeout_seconds)
        alive = ready = f"{alive} && {gcs}"
        timeout = probes.head_timeout_seconds
    elif workload == "serve":
        # A worker leaves the Serve Service as soon as its proxy stops answering, so clients never
        # reach a node that cannot route; liveness stays on the raylet alone.
        serving = _wget_health(config.serving.port, probes.serve_health_path, probes.timeout_seconds)
        ready, threshold = f"{alive} && {serving}", probes.serve_readiness_failure_threshold
    return {
        "readinessProbe": _probe(ready, timeout, threshold, config),
        "livenessProbe": _probe(alive, timeout, probes.liveness_failure_threshold, config),
    }


def _ports(config: ClusterConfig, node: Literal["head", "worker"]) -> list[dict[str, Any]]:
    ports = [("serve", config.serving.port), ("metrics", config.kubernetes.monitoring.metrics_port)]
    if node == "head":
        dashboard = config.kubernetes.probes.dashboard_port
        ports = [("gcs", GCS_PORT), ("dashboard", dashboard), ("client", CLIENT_PORT), *ports]
        ports += [("as-metrics", AUTOSCALER_METRICS_PORT), ("dash-metrics", DASHBOARD_METRICS_PORT)]
    return [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports]


def _container(
    config: ClusterConfig,
    node: Literal["head", "worker"],
    workload: Workload,
    resources: dict[str, str],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    k8s = config.kubernetes
    return {
        "name": f"ray-{node}",
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "ports": _ports(config, node),
        "env": container_env(config),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": mounts,
        **container_probes(config, node, workload),
    }


def _pod_spec(
    config: ClusterConfig, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    k8s = config.kubernetes
    spec: dict[str, Any] = {}
    if k8s.service_account_name:
        spec["serviceAccountName"] = k8s.service_account_name
    if k8s.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in k8s.image_pull_secrets]
    spec["containers"] = [container]
    spec["volumes"] = volumes
    # Autoscaler v2 tracks Ray nodes by pod: a restarted container would come back as a stranger.
    spec["restartPolicy"] = "Never"
    return spec


def head_group_spec(config: ClusterConfig, workload: Workload) -> dict[str, Any]:
    """The head group: no CPUs for Ray work (`num-cpus: 0`), so replicas and tasks go to workers."""
    k8s = config.kubernetes
    volumes, mounts = _volumes(config, workload)
    resources = {"cpu": k8s.head.cpu, "memory": k8s.head.memory}
    container = _container(config, "head", workload, resources, mounts)
    return {
        "serviceType": k8s.head.service_type,
        "rayStartParams": {
            "num-cpus": "0",
            "dashboard-host": "0.0.0.0",
            "metrics-export-port": str(k8s.monitoring.metrics_port),
        },
        "template": {
            "metadata": _pod_metadata(config, workload),
            "spec": _pod_spec(config, container, volumes),
        },
    }


def worker_group_spec(config: ClusterConfig, plan: GroupPlan, workload: Workload) -> dict[str, Any]:
    """One worker group; batch clusters start every group at zero and let the autoscaler add pods."""
    k8s = config.kubernetes
    volumes, mounts = _volumes(config, workload)
    resources = {"cpu": str(plan.cpus_per_pod), "memory": plan.memory}
    if plan.gpus_per_pod:
        resources["nvidia.com/gpu"] = str(plan.gpus_per_pod)
    container = _container(config, "worker", workload, resources, mounts)
    spec = _pod_spec(config, container, volumes)
    if plan.gpu_product:
        spec = {"nodeSelector": {k8s.gpu_node_label: plan.gpu_product}, **spec}
        if k8s.gpu_tolerations:
            toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            spec = {"tolerations": [toleration], **spec}
    serving = workload == "serve"
    return {
        "groupName": plan.name,
        "replicas": plan.initial_pods if serving else 0,
        "minReplicas": plan.min_pods if serving else 0,
        "maxReplicas": plan.max_pods,
        "resources": plan.ray_resources(),
        "rayStartParams": {"metrics-export-port": str(k8s.monitoring.metrics_port)},
        "template": {"metadata": _pod_metadata(config, workload), "spec": spec},
    }


def ray_cluster_spec(config: ClusterConfig, plans: list[GroupPlan], workload: Workload) -> dict[str, Any]:
    """`rayClusterConfig` / `rayClusterSpec`: in-tree autoscaling (v2) over the planned groups."""
    k8s = config.kubernetes
    sidecar = {"cpu": "500m", "memory": "512Mi"}
    return {
        "rayVersion": k8s.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2",
            "upscalingMode": k8s.autoscaler_upscaling_mode,
            "idleTimeoutSeconds": k8s.autoscaler_idle_timeout_seconds,
            "resources": {"requests": dict(sidecar), "limits": dict(sidecar)},
        },
        "headGroupSpec": head_group_spec(config, workload),
        "workerGroupSpecs": [worker_group_spec(config, plan, workload) for plan in plans],
    }
