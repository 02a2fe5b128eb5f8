"""The nightly batch job: a RayJob, the RayCronJob that schedules it, and a plain CronJob alternative.

All three share one RayJob spec. The job reads the cluster config from a ConfigMap rendered from the
same config as the RayService's args, and runs `qwen-cluster batch` without `--date`, so each run
processes its own day (UTC).
"""

from __future__ import annotations

import shlex
from typing import Any

from cluster.cli import EXIT_ROWS_FAILED
from cluster.config import ClusterConfig
from cluster.k8s.groups import GroupPlan
from cluster.k8s.pods import ray_cluster_spec, resource_labels
from cluster.k8s.serve_config import container_cluster_config
from cluster.k8s.yamlio import dump_yaml

CONFIG_FILE_KEY = "cluster.yaml"


def config_file_path(config: ClusterConfig) -> str:
    """Where the batch job reads the cluster config inside its containers."""
    return f"{config.kubernetes.config_mount_path.rstrip('/')}/{CONFIG_FILE_KEY}"


def cluster_config_map(config: ClusterConfig) -> dict[str, Any]:
    """The ConfigMap holding the cluster config file the batch job runs with."""
    k8s = config.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": k8s.config_map_name,
            "namespace": k8s.namespace,
            "labels": resource_labels("config"),
        },
        "data": {CONFIG_FILE_KEY: dump_yaml(container_cluster_config(config))},
    }


def batch_command(config: ClusterConfig) -> list[str]:
    """`qwen-cluster batch ...` as argv (no `--date`: the command defaults to today, UTC)."""
    batch = config.kubernetes.batch
    argv = ["qwen-cluster", "batch", "--input", batch.input_uri, "--output", batch.output_uri]
    argv += ["--task", batch.task]
    if batch.prompt:
        argv += ["--prompt", batch.prompt]
    argv += ["--config", config_file_path(config)]
    if batch.s3_endpoint:
        argv += ["--s3-endpoint", batch.s3_endpoint]
    return argv


def batch_entrypoint(config: ClusterConfig) -> str:
    """The RayJob `entrypoint`.

    KubeRay pastes the entrypoint into the submitter's bash script (`ray job submit -- <entrypoint>;
    fi`), so anything beyond one plain command must be a single quoted `bash -c` argument.
    """
    command = shlex.join(batch_command(config))
    if not config.kubernetes.batch.partial_failure_ok:
        return command
    script = (
        f"{command}; status=$?; "
        f'if [ "$status" -eq {EXIT_ROWS_FAILED} ]; then '
        'echo "qwen-cluster batch: some rows failed; their error rows are in the output"; exit 0; fi; '
        'exit "$status"'
    )
    return shlex.join(["bash", "-c", script])


def ray_job_spec(config: ClusterConfig, plans: list[GroupPlan]) -> dict[str, Any]:
    """The RayJob spec shared by the one-off RayJob, the RayCronJob and the plain CronJob."""
    batch = config.kubernetes.batch
    return {
        "entrypoint": batch_entrypoint(config),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": batch.ttl_seconds_after_finished,
        "activeDeadlineSeconds": batch.active_deadline_seconds,
        "preRunningDeadlineSeconds": batch.pre_running_deadline_seconds,
        "backoffLimit": batch.backoff_limit,
        "submitterConfig": {"backoffLimit": batch.submitter_backoff_limit},
        "rayClusterSpec": ray_cluster_spec(config, plans, "batch"),
    }


def ray_job(config: ClusterConfig, plans: list[GroupPlan], namespace: bool = True) -> dict[str, Any]:
    """A one-off RayJob; `generateName` lets `kubectl create -f` start a new run each time."""
    k8s = config.kubernetes
    metadata: dict[str, Any] = {"generateName": f"{k8s.batch.name}-"}
    if namespace:
        metadata["namespace"] = k8s.namespace
    metadata["labels"] = resource_labels("batch")
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": metadata,
        "spec": ray_job_spec(config, plans),
    }


def ray_cron_job(config: ClusterConfig, plans: list[GroupPlan]) -> dict[str, Any]:
    """The RayCronJob (KubeRay >= 1.6, alpha, operator feature gate `RayCronJob=true`)."""
    k8s = config.kubernetes
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": k8s.batch.name, "namespace": k8s.namespace, "labels": resource_labels("batch")},
        "spec": {
            "schedule": k8s.batch.schedule,
            "timeZone": k8s.batch.time_zone,
            "suspend": k8s.batch.suspend,
            "jobTemplate": ray_job_spec(config, plans),
        },
    }


def plain_cron_job(config: ClusterConfig, plans: list[GroupPlan]) -> list[dict[str, Any]]:
    """A CronJob that creates the RayJob with kubectl, for operators without the RayCronJob gate.

    Returns the ServiceAccount, Role and RoleBinding it runs as, the ConfigMap holding the RayJob
    template, and the CronJob.
    """
    k8s = config.kubernetes
    batch = k8s.batch
    account = f"{batch.name}-scheduler"
    template_map = f"{batch.name}-rayjob"
    labels = resource_labels("batch")

    def metadata(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": k8s.namespace, "labels": dict(labels)}

    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(account)}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(account),
        "rules": [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(account),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": k8s.namespace}],
    }
    template = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(template_map),
        "data": {"ray-job.yaml": dump_yaml(ray_job(config, plans, namespace=False))},
    }
    mount = "/etc/qwen-batch"
    creator = {
        "name": "create-rayjob",
        "image": batch.kubectl_image,
        "command": ["kubectl", "create", "-f", f"{mount}/ray-job.yaml"],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "volumeMounts": [{"name": "rayjob-template", "mountPath": mount, "readOnly": True}],
    }
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(batch.name),
        "spec": {
            "schedule": batch.schedule,
            "timeZone": batch.time_zone,
            "suspend": batch.suspend,
            # The pod only creates the RayJob and exits, so Forbid cannot see a still-running batch;
            # activeDeadlineSeconds on the RayJob is what bounds overlap.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": batch.starting_deadline_seconds,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {
                            "serviceAccountName": account,
                            "restartPolicy": "Never",
                            "containers": [creator],
                            "volumes": [{"name": "rayjob-template", "configMap": {"name": template_map}}],
                        },
                    },
                }
            },
        },
    }
    return [service_account, role, binding, template, cron_job]
