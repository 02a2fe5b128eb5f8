"""One definition of each metric: the app registers it, the dashboard reads it, the check knows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cluster import metric_names as names
from cluster.k8s.monitoring import DASHBOARD_FILE, dashboard_problems

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "monitoring" / DASHBOARD_FILE


def dashboard_text() -> str:
    return DASHBOARD.read_text(encoding="utf-8")


class Recorded:
    """Stands in for ray.util.metrics.Counter/Histogram and remembers how it was made."""

    made: list[tuple[str, dict]] = []

    def __init__(self, name: str, **options: object) -> None:
        Recorded.made.append((name, options))


def test_serving_metrics_registers_exactly_the_defined_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.util import metrics

    from deployments.metrics import ServingMetrics

    Recorded.made = []
    monkeypatch.setattr(metrics, "Counter", Recorded)
    monkeypatch.setattr(metrics, "Histogram", Recorded)
    ServingMetrics()
    made = dict(Recorded.made)
    assert set(made) == {metric.name for metric in names.SERVING_METRICS}
    for metric in names.SERVING_METRICS:
        options = made[metric.name]
        assert options["description"] == metric.description and options["tag_keys"] == metric.tag_keys
        assert options.get("boundaries") == (list(metric.buckets) if metric.buckets else None)


def test_the_dashboard_reads_every_defined_metric_and_nothing_else() -> None:
    read = {m.removesuffix("_bucket") for m in re.findall(r"\bray_[a-z0-9_]+", dashboard_text())}
    assert read == names.exported_names()
    assert dashboard_problems(json.loads(dashboard_text())) == []


def test_a_renamed_metric_is_caught_in_the_dashboard() -> None:
    dashboard = json.loads(dashboard_text().replace(names.TOKENS.exported, "ray_qwen_token_count"))
    problems = dashboard_problems(dashboard)
    assert any("reads unknown metric ray_qwen_token_count" in p for p in problems), problems
    assert f"no panel reads metric {names.TOKENS.exported}" in problems


def test_a_metric_left_off_the_dashboard_is_caught() -> None:
    dashboard = json.loads(dashboard_text())
    dashboard["panels"] = [
        p for p in dashboard["panels"] if names.ROUTES.exported not in json.dumps(p.get("targets", []))
    ]
    problems = dashboard_problems(dashboard)
    assert (
        f"no panel reads metric {names.ROUTES.exported}" in problems and "no panel about routes" in problems
    )


def test_the_api_reference_lists_every_metric_with_its_labels() -> None:
    reference = (DASHBOARD.parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    rows = {
        name: tuple(re.findall(r"`(\w+)`", labels))
        for name, labels in re.findall(r"^\| `(ray_qwen_\w+)` \| \w+ \| (.*) \|$", reference, flags=re.M)
    }
    expected = {f"{names.PROMETHEUS_PREFIX}{m.name}": m.tag_keys for m in names.SERVING_METRICS}
    assert rows == expected
