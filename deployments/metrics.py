"""Serving metrics, exported through Ray's metrics agent (Prometheus names get the `ray_` prefix).

One `ServingMetrics` per ingress replica; no module-level metric objects.
"""

from __future__ import annotations

LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]


class ServingMetrics:
    """Counters and histograms per model (and per route reason for the router)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(
            "qwen_requests_total",
            description="Requests answered, by model and HTTP status.",
            tag_keys=("model", "status"),
        )
        self.errors = metrics.Counter(
            "qwen_errors_total",
            description="Requests that failed, by model and error type.",
            tag_keys=("model", "error_type"),
        )
        self.latency = metrics.Histogram(
            "qwen_request_latency_s",
            description="End-to-end request latency in seconds.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("model",),
        )
        self.ttft = metrics.Histogram(
            "qwen_time_to_first_token_s",
            description="Time to the first generated token in seconds.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("model",),
        )
        self.tokens = metrics.Counter(
            "qwen_tokens_total",
            description="Tokens processed, by model and kind (prompt, completion).",
            tag_keys=("model", "kind"),
        )
        self.routes = metrics.Counter(
            "qwen_routes_total",
            description="Routing decisions, by chosen model and reason.",
            tag_keys=("model", "reason"),
        )

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

    def record_route(self, model: str, reason: str) -> None:
        """One routing decision."""
        self.routes.inc(1, tags={"model": model, "reason": reason})
