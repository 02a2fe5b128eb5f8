"""Paired periods, shared by the benches that alternate two settings on one warm machine
(bench/prefill_defer.py, bench/vllm_cpu_pinning.py, bench/paired_servers.py).

A shared 2-core machine drifts by more within minutes than most changes move a figure, so those
benches measure two settings in short periods, A B then B A, and compare each pair's two periods:
within a pair the machine is the same, and alternating the order cancels a bias towards the first
(or second) period of a pair. The median of the pairs' ratios is the figure reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def period_order(pair: int, settings: Sequence[T]) -> list[T]:
    """The settings in the order pair number `pair` measures them: as given, then reversed."""
    return list(settings) if pair % 2 == 0 else list(settings)[::-1]


def pair_ratios(base: Sequence[float], other: Sequence[float]) -> list[float]:
    """`other / base` for each pair; a pair whose base period answered nothing is left out."""
    return [b / a for a, b in zip(base, other, strict=True) if a]


def ratio_summary(ratios: Sequence[float]) -> str:
    """The per-pair ratios and their median, as the paired benches print them."""
    if not ratios:
        return "no pair answered"
    return f"per pair {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}x"
