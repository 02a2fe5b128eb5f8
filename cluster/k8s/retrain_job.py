"""The nightly router retrain as a RayCronJob (`ray-cronjob.router-retrain.yaml`).

It reuses the batch job's RayJob spec (cluster, config map, deadlines) with its own entrypoint:
`qwen-cluster router retrain --labels <router.shadow.output> --config <mounted config>`, which writes
to `router.reload.calibration_uri` only when the gate passes; the ingress reloads it from there.
"""

from __future__ import annotations

import shlex
from typing import Any

from cluster.config import ClusterConfig
from cluster.k8s.batch_jobs import config_file_path, ray_job_spec
from cluster.k8s.groups import GroupPlan
from cluster.k8s.pods import resource_labels


def retrain_rendered(config: ClusterConfig) -> bool:
    """Whether the config asks for the retrain job and has labels to read and a calibration to write."""
    router = config.router
    return bool(config.kubernetes.retrain.enabled and router.shadow.output and router.reload.calibration_uri)


def retrain_command(config: ClusterConfig) -> list[str]:
    """`qwen-cluster router retrain ...` as argv."""
    job = config.kubernetes.retrain
    argv = ["qwen-cluster", "router", "retrain", "--labels", str(config.router.shadow.output)]
    argv += ["--config", config_file_path(config)]
    argv += ["--holdout", str(job.holdout), "--min-gain", str(job.min_gain)]
    argv += ["--target-quality", str(job.target_quality)]
    if config.kubernetes.batch.s3_endpoint:
        argv += ["--s3-endpoint", config.kubernetes.batch.s3_endpoint]
    return argv


def retrain_cron_job(config: ClusterConfig, plans: list[GroupPlan]) -> dict[str, Any]:
    """The RayCronJob (KubeRay >= 1.6, feature gate `RayCronJob=true`); suspended with the batch job."""
    k8s = config.kubernetes
    job = k8s.retrain
    spec = ray_job_spec(config, plans)
    spec["entrypoint"] = shlex.join(retrain_command(config))
    spec["activeDeadlineSeconds"] = job.active_deadline_seconds
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": job.name, "namespace": k8s.namespace, "labels": resource_labels("retrain")},
        "spec": {
            "schedule": job.schedule,
            "timeZone": k8s.batch.time_zone,
            "suspend": k8s.batch.suspend,
            "jobTemplate": spec,
        },
    }
