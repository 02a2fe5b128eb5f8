"""The quality-versus-cost curve of `router eval --curve PNG`: the quality policy re-run over a sweep
of tolerances on the same per-size estimates, drawn with Pillow (already a dependency).

Quality is measured on rows with per-size `correct` labels when there are any; otherwise it is the
policy's own estimate of P(correct) for the size it chose, and the plot says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.catalog import SIZES, ModelSize, relative_cost
from deployments.router.policy import RouteDecision
from deployments.router.quality import choose_size
from pipelines.router_training.dataset import LabeledRow

TOLERANCES = (0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class SweepPoint:
    """The policy at one tolerance."""

    tolerance: float
    cost: float
    quality: float
    exact: float | None


def sweep(
    rows: Sequence[LabeledRow],
    decisions: Sequence[RouteDecision],
    served: Sequence[ModelSize],
    tolerances: Sequence[float] = TOLERANCES,
) -> tuple[list[SweepPoint], bool]:
    """Cost, quality and exact agreement at each tolerance.

    Returns:
        (points, measured): `measured` is True when quality comes from `correct` labels.
    """
    pairs = [(r, d) for r, d in zip(rows, decisions, strict=True) if d.estimates]
    labeled = [(r, d) for r, d in pairs if r.correct and all(s in r.correct for s in served)]
    measured = bool(labeled)
    use = labeled if measured else pairs
    points = []
    for tolerance in tolerances:
        chosen = [choose_size(d.estimates, served, tolerance) for _, d in use]
        cost = sum(relative_cost(s) for s in chosen) / max(1, len(chosen))
        if measured:
            quality = sum(r.correct[s] for (r, _), s in zip(use, chosen, strict=True)) / len(use)
        else:
            quality = sum(d.estimates[s] for (_, d), s in zip(use, chosen, strict=True)) / max(1, len(use))
        truth = [(r.label, s) for (r, _), s in zip(use, chosen, strict=True) if r.label is not None]
        exact = sum(a == b for a, b in truth) / len(truth) if truth else None
        points.append(SweepPoint(tolerance, cost, quality, exact))
    return points, measured


def sweep_lines(points: Sequence[SweepPoint], measured: bool) -> list[str]:
    """The sweep as a printable table."""
    kind = "measured on `correct` rows" if measured else "ESTIMATED by the policy (no `correct` rows)"
    out = [f"tolerance sweep (quality {kind}; cost vs always {SIZES[-1]}):", "  tolerance   cost  quality  exact"]
    for p in points:
        exact = "   n/a" if p.exact is None else f"{p.exact:6.3f}"
        out.append(f"  {p.tolerance:9.2f} {p.cost:6.3f}  {p.quality:7.3f} {exact}")
    return out


def plot(points: Sequence[SweepPoint], measured: bool, path: str | Path) -> Path:
    """Draw quality against cost, one labelled point per tolerance, as a PNG at `path`."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 480, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    low = min(p.quality for p in points)
    high = max(p.quality for p in points)
    span = max(high - low, 1e-6)

    def xy(point: SweepPoint) -> tuple[float, float]:
        x = margin + point.cost * (width - 2 * margin)
        y = height - margin - (point.quality - low) / span * (height - 2 * margin)
        return x, y

    draw.line([(margin, height - margin), (width - margin, height - margin)], fill="black")
    draw.line([(margin, margin), (margin, height - margin)], fill="black")
    ordered = sorted(points, key=lambda p: p.cost)
    draw.line([xy(p) for p in ordered], fill=(31, 119, 180), width=2)
    for point in ordered:
        x, y = xy(point)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(214, 39, 40))
        draw.text((x + 5, y - 12), f"{point.tolerance:g}", fill="black")
    kind = "measured" if measured else "estimated"
    draw.text((margin, 15), f"router: quality ({kind}) vs cost, one point per tolerance", fill="black")
    draw.text((width // 2 - 90, height - margin + 20), f"cost relative to always {SIZES[-1]} (0..1)", fill="black")
    draw.text((5, margin - 20), f"quality {high:.3f}", fill="black")
    draw.text((5, height - margin + 5), f"{low:.3f}", fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
