"""The RayService: the OpenAI-compatible API on an autoscaled Ray cluster."""

from __future__ import annotations

from typing import Any

from cluster.config import ClusterConfig
from cluster.k8s.groups import GroupPlan
from cluster.k8s.pods import ray_cluster_spec, resource_labels
from cluster.k8s.serve_config import serve_config_text


def upgrade_strategy(config: ClusterConfig) -> dict[str, Any]:
    """`upgradeStrategy`: blue-green by default; the incremental one carries its Gateway options."""
    upgrade = config.kubernetes.upgrade
    strategy: dict[str, Any] = {"type": upgrade.strategy}
    if upgrade.strategy == "NewClusterWithIncrementalUpgrade":
        strategy["clusterUpgradeOptions"] = {
            "gatewayClassName": upgrade.gateway_class_name,
            "stepSizePercent": upgrade.step_size_percent,
            "intervalSeconds": upgrade.interval_seconds,
            "maxSurgePercent": upgrade.max_surge_percent,
        }
    return strategy


def ray_service(config: ClusterConfig, plans: list[GroupPlan]) -> dict[str, Any]:
    """The RayService manifest."""
    k8s = config.kubernetes
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": k8s.name, "namespace": k8s.namespace, "labels": resource_labels("serve")},
        "spec": {
            "upgradeStrategy": upgrade_strategy(config),
            "rayClusterDeletionDelaySeconds": k8s.upgrade.cluster_deletion_delay_seconds,
            "excludeHeadPodFromServeSvc": k8s.exclude_head_from_serve_service,
            "serveConfigV2": serve_config_text(config, plans),
            "rayClusterConfig": ray_cluster_spec(config, plans, "serve"),
        },
    }
