"""Where rendered files go, relative to infra/ (shared by the renderer, the validator and the CLI).

The base is a folder beside the overlays, not their parent: kustomize refuses an overlay that lies
inside its own base ("cycle detected").
"""

from __future__ import annotations

KUBERAY = "kuberay"
BASE = f"{KUBERAY}/base"
OVERLAYS = f"{KUBERAY}/overlays"
MONITORING = "monitoring"
KUSTOMIZATION_FILE = "kustomization.yaml"
OVERLAY_BASE_REFERENCE = "../../base"
CONFIG_MAP_FILE = "configmap.qwen-cluster-config.yaml"
RAY_JOB_FILE = "ray-job.nightly-batch.yaml"
RAY_CRON_JOB_FILE = "ray-cronjob.nightly-batch.yaml"
PLAIN_CRON_JOB_FILE = "cronjob.nightly-batch.yaml"
