"""Prometheus scraping (a PodMonitor) and the Grafana dashboard of the Serve app's metrics.

The app's metrics go through Ray's metrics agent, so every Ray pod exports them on its metrics port
with a `ray_` prefix; the head also exports autoscaler and dashboard metrics on their own ports.
Metric names come from `cluster.metric_names`, the definitions the app registers.
"""

from __future__ import annotations

import re
from typing import Any

from cluster import metric_names as names
from cluster.config import ClusterConfig
from cluster.k8s.pods import PART_OF, resource_labels

SCRAPED_PORTS = ("metrics", "as-metrics", "dash-metrics")
DASHBOARD_TOPICS = ("requests", "latency", "first token", "tokens", "routes")
MODEL = 'model=~"$model"'


def pod_monitor(config: ClusterConfig) -> dict[str, Any]:
    """A PodMonitor scraping every Ray pod of the default and environment namespaces."""
    k8s = config.kubernetes
    namespaces = sorted({k8s.namespace, *(env.namespace for env in k8s.overlays.values())})
    relabel = [
        {"sourceLabels": [f"__meta_kubernetes_pod_label_{source}"], "targetLabel": target}
        for source, target in (
            ("ray_io_cluster", "ray_io_cluster"),
            ("ray_io_group", "ray_io_group"),
            ("app_kubernetes_io_component", "component"),
        )
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


def _selector(*extra: str) -> str:
    return "{" + ", ".join(['namespace=~"$namespace"', *extra]) + "}"


def _rate(metric: str, by: str, *extra: str) -> str:
    return f"sum by ({by}) (rate({metric}{_selector(*extra)}[$__rate_interval]))"


def _quantiles(
    metric: str, by: str, *extra: str, qs: tuple[float, ...] = (0.5, 0.95)
) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, {_rate(metric + '_bucket', by + ', le', *extra)})",
            f"{{{{{by}}}}} p{q * 100:g}",
        )
        for q in qs
    ]


def _panel(title: str, unit: str, targets: list[tuple[str, str]], description: str) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def dashboard_panels() -> list[dict[str, Any]]:
    """Rows and panels, in reading order (ids and positions are added by `grafana_dashboard`)."""
    routes = names.ROUTES.exported
    healthy, queued, processing = names.SERVE_METRICS
    return [
        _row("Requests per size"),
        _panel(
            "Requests per second by size and status",
            "reqps",
            [(_rate(names.REQUESTS.exported, "model, status", MODEL), "{{model}} {{status}}")],
            "Completed requests per size, split by outcome.",
        ),
        _panel(
            "Request latency by size (p50, p95)",
            "s",
            _quantiles(names.LATENCY.exported, "model", MODEL),
            "End-to-end latency measured by the model servers.",
        ),
        _panel(
            "Time to first token by size (p50, p95)",
            "s",
            _quantiles(names.TIME_TO_FIRST_TOKEN.exported, "model", MODEL),
            "Seconds from request arrival to the first streamed token.",
        ),
        _panel(
            "Tokens per second by size and kind",
            "short",
            [(_rate(names.TOKENS.exported, "model, kind", MODEL), "{{model}} {{kind}}")],
            "Prompt and completion tokens processed per second.",
        ),
        _panel(
            "Errors per second by size and type",
            "reqps",
            [(_rate(names.ERRORS.exported, "model, error_type", MODEL), "{{model}} {{error_type}}")],
            "Failed requests per size, by error type.",
        ),
        _row("Routing"),
        _panel(
            "Routes per second by size and reason",
            "reqps",
            [(_rate(routes, "model, reason", MODEL), "{{model}} {{reason}}")],
            "Where `auto` requests were sent and why (difficulty score, explicit size, fallback).",
        ),
        _panel(
            "Share of routed requests by size",
            "percentunit",
            [
                (
                    f"{_rate(routes, 'model', MODEL)} / ignoring(model) group_left "
                    f"sum(rate({routes}{_selector()}[$__rate_interval]))",
                    "{{model}}",
                )
            ],
            "Fraction of routed traffic each size receives.",
        ),
        _row("Ray Serve"),
        _panel(
            "Healthy replicas per deployment",
            "short",
            [(f"sum by (deployment) ({healthy}{_selector()})", "{{deployment}}")],
            "Replicas Serve reports healthy; follows autoscaling.",
        ),
        _panel(
            "Queued requests per deployment",
            "short",
            [(f"sum by (deployment) ({queued}{_selector()})", "{{deployment}}")],
            "Requests waiting for a replica; sustained queues mean scale-up or 429s are due.",
        ),
        _panel(
            "Replica processing latency p95",
            "ms",
            _quantiles(processing, "deployment", qs=(0.95,)),
            "Time replicas spend per request, as Serve measures it.",
        ),
    ]


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def grafana_dashboard() -> dict[str, Any]:
    """The dashboard JSON: requests, latency, time to first token and tokens per size; routes per size and reason."""
    panels = []
    x, y = 0, 0
    for number, panel in enumerate(dashboard_panels(), start=1):
        if panel["type"] == "row":
            x, y = 0, y + (8 if x else 0)
            panels.append({**panel, "id": number, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
            y += 1
        else:
            panels.append({**panel, "id": number, "gridPos": {"h": 8, "w": 12, "x": x, "y": y}})
            x, y = (12, y) if x == 0 else (0, y + 8)
    requests = names.REQUESTS.exported
    return {
        "title": "Qwen3.5 cluster",
        "uid": "qwen-cluster",
        "description": "Qwen3.5 serving on Ray Serve: traffic, latency, tokens and routing per model size.",
        "tags": ["qwen", "ray-serve", "kuberay"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                _variable("namespace", "Namespace", f"label_values({requests}, namespace)"),
                _variable("model", "Size", f'label_values({requests}{{namespace=~"$namespace"}}, model)'),
            ]
        },
        "panels": panels,
    }


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """Every query reads a defined metric; panels cover requests, latency, TTFT, tokens and routes."""
    known = names.exported_names()
    problems = []
    titles = [panel.get("title", "").lower() for panel in dashboard.get("panels", [])]
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            for metric in re.findall(r"\bray_[a-z0-9_]+", target.get("expr", "")):
                if metric.removesuffix("_bucket") not in known:
                    problems.append(f"panel {panel.get('title')!r} reads unknown metric {metric}")
    problems += [
        f"no panel about {topic}" for topic in DASHBOARD_TOPICS if not any(topic in t for t in titles)
    ]
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(set(ids)) != len(ids):
        problems.append("panel ids must be unique")
    return problems
