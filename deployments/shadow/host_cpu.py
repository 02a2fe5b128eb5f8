"""How busy this host's CPUs are: the share of all cores' time spent outside idle and iowait
between two readings of the system's CPU times.

Shadow answers ask it before sampling where the model sizes share the ingress host's CPUs (the
`cpu` and `demo` profiles): there an idle size is not an idle core, so the admission counters alone
cannot tell whether a shadow answer would take compute from a user.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import psutil


class CpuTimes(NamedTuple):
    """Cumulative CPU seconds of all cores: time spent busy and in total."""

    busy: float
    total: float


def read_cpu_times() -> CpuTimes:
    """The system-wide CPU times now (psutil's, summed over cores)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times)
    return CpuTimes(busy=total - idle, total=total)


class HostCpu:
    """The host's CPU busy share: the busiest of the last `windows` windows of `window_s` seconds.

    The busiest window, not the last one: a moment's lull between bursts of traffic (measured on 2
    cores: the second between two load phases) must not let shadow work in that then runs for
    seconds into the next burst. A reading older than `window_s` is replaced on the next call, so
    callers on the request path pay for one system call per window at most.

    Args:
        window_s: how far apart two readings are at least.
        windows: how many recent windows the share is the maximum of.
        read: where CPU times come from (tests pass a fake).
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        window_s: float = 1.0,
        windows: int = 5,
        read: Callable[[], CpuTimes] = read_cpu_times,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window_s = window_s
        self.read = read
        self.clock = clock
        self.last_at = clock()
        self.last = read()
        # Unknown until a window has passed: counted as fully busy, so nothing is sampled blind.
        self.shares: deque[float] = deque([1.0], maxlen=windows)

    def busy_share(self) -> float:
        """The busy share, 0..1, of all cores in the busiest recent window (1.0 before the first
        window has passed). A gap of several windows between calls counts as one window."""
        now = self.clock()
        if now - self.last_at >= self.window_s:
            current = self.read()
            total = current.total - self.last.total
            if total > 0:
                self.shares.append(min(1.0, max(0.0, (current.busy - self.last.busy) / total)))
            self.last, self.last_at = current, now
        return max(self.shares)
