"""The host-CPU rule for shadow sampling (`router.shadow.max_host_cpu`): on a host whose sizes share
its CPUs, nothing is sampled while those CPUs are busy, and the reading itself is cheap."""

import asyncio

import pytest

from deployments.shadow.host_cpu import CpuTimes, HostCpu, read_cpu_times
from tests.unit.test_shadow_streams import CHAT, Setup, label_rows

pytestmark = pytest.mark.unit


class FakeTimes:
    """Cumulative CPU times that a test advances by hand."""

    def __init__(self):
        self.busy, self.total, self.reads = 0.0, 0.0, 0

    def advance(self, busy: float, idle: float) -> None:
        self.busy += busy
        self.total += busy + idle

    def __call__(self) -> CpuTimes:
        self.reads += 1
        return CpuTimes(self.busy, self.total)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_busy_share_is_the_share_of_cpu_time_between_readings_at_most_one_read_per_window():
    times, clock = FakeTimes(), FakeClock()
    host = HostCpu(window_s=1.0, windows=1, read=times, clock=clock)
    assert host.busy_share() == 1.0  # nothing measured yet: counted as busy, never sampled blind
    times.advance(busy=1.5, idle=0.5)
    clock.now = 1.0
    assert host.busy_share() == pytest.approx(0.75)
    reads = times.reads
    times.advance(busy=0.0, idle=2.0)
    clock.now = 1.5  # inside the window: the last share, no new reading
    assert host.busy_share() == pytest.approx(0.75) and times.reads == reads
    clock.now = 2.0
    assert host.busy_share() == pytest.approx(0.0)


def test_a_short_lull_does_not_open_the_gate_the_busiest_recent_window_counts():
    times, clock = FakeTimes(), FakeClock()
    host = HostCpu(window_s=1.0, windows=3, read=times, clock=clock)
    shares = []
    for second, busy in enumerate((1.0, 1.0, 0.1, 0.1, 0.1), start=1):
        times.advance(busy=busy, idle=1.0 - busy)
        clock.now = float(second)
        shares.append(host.busy_share())
    # A second of lull after busy ones still reads busy; three quiet seconds in a row read quiet.
    assert shares == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.1])


def test_the_real_reading_gives_a_share_between_zero_and_one():
    first = read_cpu_times()
    assert 0.0 <= first.busy <= first.total
    host = HostCpu(window_s=0.0)
    sum(i * i for i in range(200_000))  # some CPU time passes
    assert 0.0 <= host.busy_share() <= 1.0


def fake_host(share: float) -> HostCpu:
    times, clock = FakeTimes(), FakeClock()
    host = HostCpu(window_s=1.0, windows=1, read=times, clock=clock)
    times.advance(busy=share, idle=1.0 - share)
    clock.now = 1.0
    return host


@pytest.mark.parametrize("share, sampled", [(0.95, False), (0.40, True)])
def test_a_request_is_sampled_only_while_the_host_cpus_have_headroom(tmp_path, share, sampled):
    setup = Setup(tmp_path, max_host_cpu=0.8)
    setup.runner.host_cpu = fake_host(share)

    async def main():
        await setup.call(*CHAT)
        await setup.finish()

    asyncio.run(main())
    if sampled:
        assert ("", "sampled") in setup.outcomes.seen and len(label_rows(tmp_path)) == 1
    else:
        assert setup.outcomes.seen == [("", "skipped_host_cpu")] and label_rows(tmp_path) == []


def test_without_max_host_cpu_the_host_is_never_read(tmp_path):
    setup = Setup(tmp_path)
    assert setup.runner.host_cpu is None

    async def main():
        await setup.call(*CHAT)
        await setup.finish()

    asyncio.run(main())
    assert ("", "sampled") in setup.outcomes.seen and len(label_rows(tmp_path)) == 1


def test_reconfigure_turning_the_rule_on_starts_reading(tmp_path):
    setup = Setup(tmp_path)
    setup.runner.reconfigure(setup.runner.config.model_copy(update={"max_host_cpu": 0.5}))
    assert isinstance(setup.runner.host_cpu, HostCpu)
    assert setup.runner._host_cpu_busy()  # first window not over: no blind sampling
