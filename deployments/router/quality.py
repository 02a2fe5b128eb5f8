"""Expected quality per size: P(correct | request, size) from the task group and difficulty level.

Priors come from the Qwen3.5 small-model cards' per-size benchmark results by task group
(artifacts/size_priors.json, sources in training/router/README.md), turned into per-level
probabilities with a one-parameter item-response model. `router train` can replace cells with rates
measured from `correct` labels (the `router label` loop); the artifact then carries the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.catalog import SIZES, ModelSize

PRIORS_FORMAT = "qwen-cluster-router-priors/1"
DEFAULT_PRIORS = Path(__file__).parent / "artifacts" / "size_priors.json"
LEVELS = 4
LEVEL_NAMES = ("trivial", "easy", "medium", "hard")
# Probabilities stay inside (0, 1): a label table must not claim certainty.
_EPSILON = 1e-3


def _logit(p: float) -> float:
    p = min(1 - _EPSILON, max(_EPSILON, p))
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class QualityTable:
    """P(correct) for each task group, difficulty level and size.

    Attributes:
        cells: group -> level (0..3) -> size -> probability.
        source: where the numbers come from (`model-card priors`, or priors refined by labels).
    """

    cells: Mapping[str, Sequence[Mapping[ModelSize, float]]]
    source: str = "model-card priors"

    @property
    def groups(self) -> tuple[str, ...]:
        """The task groups the table knows."""
        return tuple(self.cells)

    def estimate(
        self, group_probs: Mapping[str, float], level_probs: Sequence[float]
    ) -> dict[ModelSize, float]:
        """Expected P(correct) per size, averaged over the group and level distributions.

        Groups the table does not know are ignored; with no known group the mean over groups is used.
        """
        weights = {g: w for g, w in group_probs.items() if g in self.cells and w > 0}
        if not weights:
            weights = dict.fromkeys(self.cells, 1.0)
        total = sum(weights.values())
        level_total = sum(level_probs) or 1.0
        out: dict[ModelSize, float] = {}
        for size in SIZES:
            value = 0.0
            for group, weight in weights.items():
                levels = self.cells[group]
                value += weight * sum(p * levels[k][size] for k, p in enumerate(level_probs))
            out[size] = value / total / level_total
        return out

    def to_json(self) -> dict:
        """A JSON-ready copy (for the learned artifact)."""
        return {
            "source": self.source,
            "cells": {g: [{s: round(float(v), 4) for s, v in row.items()} for row in rows] for g, rows in self.cells.items()},
        }

    @classmethod
    def from_json(cls, document: Mapping) -> QualityTable:
        """Read what `to_json` wrote.

        Raises:
            ValueError: for a table without four levels and every size per group.
        """
        cells = {}
        for group, rows in dict(document["cells"]).items():
            if len(rows) != LEVELS or any(set(row) != set(SIZES) for row in rows):
                raise ValueError(f"quality table group {group!r} needs {LEVELS} levels with every size")
            cells[group] = [{s: float(row[s]) for s in SIZES} for row in rows]
        return cls(cells=cells, source=str(document.get("source", "artifact")))


def _cell(ability: Mapping[ModelSize, float], item: float) -> dict[ModelSize, float]:
    """P(correct) of each size for a request of item difficulty `item` (the one-parameter IRT model)."""
    return {s: _sigmoid(ability[s] - item) for s in SIZES}


def _choice(ability: Mapping[ModelSize, float], item: float, tolerance: float) -> int:
    """Index of the size the policy picks for a request of item difficulty `item` in one group."""
    return SIZES.index(choose_size(_cell(ability, item), SIZES, tolerance))


def level_items(
    ability: Mapping[ModelSize, float], offsets: Sequence[float], tolerance: float | None
) -> list[float]:
    """Each level's item difficulty in one group (logit scale).

    Level k starts at the shared offset, logit(acc_9b) + offsets[k]. With `tolerance`, a level whose
    shared offset does not make size k the smallest within `tolerance` of the best (the rubric's
    definition of a level) moves to the middle of the first range of difficulties, going from easy
    to hard, where size k is that choice; a level the group's figures never send to size k (its 9B
    is nowhere `tolerance` above its 4B) keeps the shared offset.
    """
    top = ability[SIZES[-1]]
    items = [top + offset for offset in offsets]
    if tolerance is None:
        return items
    # 20 logits around the top size's ability, in steps of 0.01: from items every size answers to
    # items none does. Scanned only when a level needs moving.
    grid: list[float] = []
    choices: list[int] = []
    for level, item in enumerate(items):
        if _choice(ability, item, tolerance) == level:
            continue
        if not grid:
            grid = [top - 12.0 + step * 0.01 for step in range(2001)]
            choices = [_choice(ability, point, tolerance) for point in grid]
        start = next((i for i, choice in enumerate(choices) if choice == level), None)
        if start is None:
            continue
        end = start
        while end + 1 < len(grid) and choices[end + 1] == level:
            end += 1
        items[level] = (grid[start] + grid[end]) / 2
    return items


def prior_table(path: str | Path | None = None) -> QualityTable:
    """The model-card prior table (artifacts/size_priors.json unless `path` names another file).

    Raises:
        ValueError: when the file is not a priors file of this format.
    """
    path = Path(path) if path is not None else DEFAULT_PRIORS
    document = json.loads(path.read_text())
    if document.get("format") != PRIORS_FORMAT:
        raise ValueError(f"{path} is not a router priors file (format {PRIORS_FORMAT!r})")
    offsets = [float(o) for o in document["level_offsets"]]
    if len(offsets) != LEVELS:
        raise ValueError(f"{path}: level_offsets needs {LEVELS} values")
    tolerance = document.get("levels_match_sizes_at_tolerance")
    if tolerance is not None and not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise ValueError(
            f"{path}: levels_match_sizes_at_tolerance must be a number in (0, 1); got {tolerance!r}"
        )
    cells = {}
    for group, accuracy in document["groups"].items():
        ability = {s: _logit(float(accuracy[s])) for s in SIZES}
        items = level_items(ability, offsets, tolerance)
        cells[group] = [_cell(ability, item) for item in items]
    return QualityTable(cells=cells)


# The quality-table group each structure signal points at (see `RoutingInput.structure`).
STRUCTURE_GROUPS = {"tools": "tool_use", "structured": "instruction"}


def structure_factors(
    table: QualityTable,
    level_probs: Sequence[float],
    structure: Sequence[str],
    weights: Mapping[str, float],
) -> dict[ModelSize, float]:
    """What each size's estimate is multiplied by for the request's structure signals.

    A request that offers tools is answered well only if its content AND its call are right, so its
    P(correct) is a product: P(content) * P(group of the signal)^weight, the second factor read at the
    request's own levels (`STRUCTURE_GROUPS`; weight 0 ignores the signal, 1 counts it as a second task
    in full). A product widens the gaps between sizes, so a signal can only move a request up, never
    down the way a mixture of groups with smaller gaps would. Signals whose group the table lacks are
    skipped.
    """
    factors = dict.fromkeys(SIZES, 1.0)
    for signal in structure:
        group, weight = STRUCTURE_GROUPS[signal], weights.get(signal, 0.0)
        if group not in table.cells or weight <= 0:
            continue
        needed = table.estimate({group: 1.0}, level_probs)
        factors = {s: factors[s] * needed[s] ** weight for s in SIZES}
    return factors


def choose_size(
    estimates: Mapping[ModelSize, float],
    served: Sequence[ModelSize],
    tolerance: float,
    bias: Mapping[ModelSize, float] | None = None,
) -> ModelSize:
    """The smallest served size whose estimate (plus its calibration bias) is within `tolerance` of
    the best served size's: "the cheapest model with P >= max - tolerance"."""
    bias = bias or {}
    adjusted = {s: estimates[s] + bias.get(s, 0.0) for s in served}
    best = max(adjusted.values())
    return next(s for s in served if adjusted[s] >= best - tolerance)
