"""Prometheus scraping (a PodMonitor rendered from the config) and the check of the Grafana dashboard.

The app's metrics go through Ray's metrics agent, so every Ray pod exports them on its metrics port
with a `ray_` prefix; the head also exports autoscaler and dashboard metrics on their own ports.
The dashboard is a checked-in file (`infra/monitoring/grafana-dashboard.qwen.json`, edited in
Grafana and exported); `dashboard_problems` holds it to `cluster.metric_names`, the definitions the
app registers.
"""

from __future__ import annotations

import re
from typing import Any

from cluster import metric_names as names
from cluster.config import ClusterConfig
from cluster.k8s.pods import PART_OF, resource_labels

DASHBOARD_FILE = "grafana-dashboard.qwen.json"
SCRAPED_PORTS = ("metrics", "as-metrics", "dash-metrics")
DASHBOARD_TOPICS = ("requests", "latency", "first token", "tokens", "routes")
RELABELED = (
    ("ray_io_cluster", "ray_io_cluster"),
    ("ray_io_group", "ray_io_group"),
    ("app_kubernetes_io_component", "component"),
)


def pod_monitor(config: ClusterConfig) -> dict[str, Any]:
    """A PodMonitor scraping every Ray pod of the default and environment namespaces."""
    k8s = config.kubernetes
    namespaces = sorted({k8s.namespace, *(env.namespace for env in k8s.overlays.values())})
    relabel = [
        {"sourceLabels": [f"__meta_kubernetes_pod_label_{source}"], "targetLabel": target}
        for source, target in RELABELED
    ]
    endpoints = [
        {"port": port, "path": "/metrics", "interval": k8s.monitoring.scrape_interval, "relabelings": relabel}
        for port in SCRAPED_PORTS
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"{k8s.name}-ray",
            "namespace": k8s.namespace,
            "labels": resource_labels("monitoring"),
        },
        "spec": {
            "namespaceSelector": {"matchNames": namespaces},
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF, "ray.io/is-ray-node": "yes"}},
            "podMetricsEndpoints": endpoints,
        },
    }


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every query reads a defined metric, every defined metric is on a panel, and panels cover
    requests, latency, time to first token, tokens and routes."""
    known = names.exported_names()
    panels = dashboard.get("panels", [])
    problems, read = [], set()
    for panel in panels:
        for target in panel.get("targets", []):
            for metric in re.findall(r"\bray_[a-z0-9_]+", target.get("expr", "")):
                read.add(metric.removesuffix("_bucket"))
                if metric.removesuffix("_bucket") not in known:
                    problems.append(f"panel {panel.get('title')!r} reads unknown metric {metric}")
    problems += [f"no panel reads metric {metric}" for metric in sorted(known - read)]
    titles = [str(panel.get("title", "")).lower() for panel in panels]
    problems += [
        f"no panel about {topic}" for topic in DASHBOARD_TOPICS if not any(topic in t for t in titles)
    ]
    ids = [panel.get("id") for panel in panels]
    if len(set(ids)) != len(ids):
        problems.append("panel ids must be unique")
    return problems
