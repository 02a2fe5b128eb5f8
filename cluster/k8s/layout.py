"""Where rendered files go, relative to infra/ (shared by the renderer, the validator and the CLI).

Each environment is one self-contained folder, `kuberay/<environment>/`, whose kustomization lists
its resources and nothing else, so `kubectl apply -k` works on it and users can overlay it.
"""

from __future__ import annotations

KUBERAY = "kuberay"
MONITORING = "monitoring"
DEFAULT_ENVIRONMENT = "default"
KUSTOMIZATION_FILE = "kustomization.yaml"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
CONFIG_MAP_FILE = "configmap.qwen-cluster-config.yaml"
RAY_JOB_FILE = "ray-job.nightly-batch.yaml"
RAY_CRON_JOB_FILE = "ray-cronjob.nightly-batch.yaml"
PLAIN_CRON_JOB_FILE = "cronjob.nightly-batch.yaml"
