"""Serving metrics, exported through Ray's metrics agent (Prometheus names get the `ray_` prefix).

One `ServingMetrics` per ingress replica; no module-level metric objects. Names, descriptions, tag
keys and buckets come from `cluster.metric_names`, which the dashboard renderer reads too.
"""

from __future__ import annotations

from cluster import metric_names as names
from cluster.metric_names import Metric


class ServingMetrics:
    """Counters and histograms per model (and per route reason for the router)."""

    def __init__(self) -> None:
        from ray.util import metrics

        def counter(metric: Metric):
            return metrics.Counter(metric.name, description=metric.description, tag_keys=metric.tag_keys)

        def histogram(metric: Metric):
            return metrics.Histogram(
                metric.name,
                description=metric.description,
                boundaries=list(metric.buckets or ()),
                tag_keys=metric.tag_keys,
            )

        self.requests = counter(names.REQUESTS)
        self.errors = counter(names.ERRORS)
        self.latency = histogram(names.LATENCY)
        self.ttft = histogram(names.TIME_TO_FIRST_TOKEN)
        self.tokens = counter(names.TOKENS)
        self.routes = counter(names.ROUTES)
        self.shadow = counter(names.SHADOW)

    def record_request(self, model: str, status: int, latency_s: float) -> None:
        """One finished request."""
        self.requests.inc(1, tags={"model": model, "status": str(status)})
        self.latency.observe(latency_s, tags={"model": model})

    def record_error(self, model: str, error_type: str) -> None:
        """One failed request."""
        self.errors.inc(1, tags={"model": model, "error_type": error_type})

    def record_first_token(self, model: str, seconds: float) -> None:
        """Time to first token of one request."""
        self.ttft.observe(seconds, tags={"model": model})

    def record_tokens(self, model: str, prompt: int, completion: int) -> None:
        """Token usage of one request."""
        if prompt:
            self.tokens.inc(prompt, tags={"model": model, "kind": "prompt"})
        if completion:
            self.tokens.inc(completion, tags={"model": model, "kind": "completion"})

    def record_route(self, model: str, reason: str, family: str | None = None) -> None:
        """One routing decision; `family` is the task family (or group) that decided, "" if none."""
        self.routes.inc(1, tags={"model": model, "reason": reason, "family": family or ""})

    def record_shadow(self, size: str, outcome: str) -> None:
        """One shadow answer's outcome on `size`, or one label record's (`size` "")."""
        self.shadow.inc(1, tags={"size": size, "outcome": outcome})
