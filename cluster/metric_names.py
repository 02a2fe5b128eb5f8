"""One definition of each serving metric: what the app records and what dashboards and checks read.

`deployments.metrics.ServingMetrics` registers these with Ray's metrics agent, which exports them to
Prometheus with a `ray_` prefix (histograms add `_bucket`, `_sum`, `_count`); the Kubernetes
validator holds the checked-in Grafana dashboard to these names (a panel reading a metric not
defined here, or a metric no panel reads, is an error). Adding a tag key is a one-line change to
`tag_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROMETHEUS_PREFIX = "ray_"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Metric:
    """A metric as the app registers it.

    Attributes:
        name: name given to `ray.util.metrics` (without the `ray_` export prefix).
        kind: counter or histogram.
        description: help text.
        tag_keys: label names, in the order the app passes them.
        buckets: histogram bucket boundaries (None for counters).
    """

    name: str
    kind: Literal["counter", "histogram"]
    description: str
    tag_keys: tuple[str, ...]
    buckets: tuple[float, ...] | None = None

    @property
    def exported(self) -> str:
        """The name Prometheus stores (`ray_` prefix)."""
        return PROMETHEUS_PREFIX + self.name


REQUESTS = Metric(
    "qwen_requests_total", "counter", "Requests answered, by model and HTTP status.", ("model", "status")
)
ERRORS = Metric(
    "qwen_errors_total", "counter", "Requests that failed, by model and error type.", ("model", "error_type")
)
LATENCY = Metric(
    "qwen_request_latency_s",
    "histogram",
    "End-to-end request latency in seconds.",
    ("model",),
    LATENCY_BUCKETS_S,
)
TIME_TO_FIRST_TOKEN = Metric(
    "qwen_time_to_first_token_s",
    "histogram",
    "Time to the first generated token in seconds.",
    ("model",),
    LATENCY_BUCKETS_S,
)
TOKENS = Metric(
    "qwen_tokens_total",
    "counter",
    "Tokens processed, by model and kind (prompt, completion).",
    ("model", "kind"),
)
ROUTES = Metric(
    "qwen_routes_total",
    "counter",
    "Routing decisions, by chosen model, reason and task family.",
    ("model", "reason", "family"),
)
SHADOW = Metric(
    "qwen_shadow_total",
    "counter",
    "Shadow answers by size and outcome (answered, dropped_busy, preempted, timeout, error, judge_*); per "
    "request (empty size): sampled, skipped_busy, skipped_host_cpu, recorded, failed. Never part of a user's usage.",
    ("size", "outcome"),
)
SERVING_METRICS = (REQUESTS, ERRORS, LATENCY, TIME_TO_FIRST_TOKEN, TOKENS, ROUTES, SHADOW)

# Ray Serve's own metrics that the dashboard reads (defined by Ray, exported with the same prefix).
SERVE_METRICS = (
    "ray_serve_deployment_replica_healthy",
    "ray_serve_deployment_queued_queries",
    "ray_serve_deployment_processing_latency_ms",
)


def exported_names() -> set[str]:
    """Every metric name a dashboard may read (histogram series without their suffix)."""
    return {metric.exported for metric in SERVING_METRICS} | set(SERVE_METRICS)
