"""What the ingress knows of each size's capacity: ready replicas, requests in flight and waiting.

Ready replica counts come from Serve's controller (polled in the background, never on the request
path). Admission follows Serve's own two limits, counted by this ingress replica for its share:
`ready replicas x max_ongoing_requests` requests in flight, then up to `max_queued_requests` waiting
here, first come first served, for a slot, each for at most `serving.ingress.max_queue_wait_s`; a
429 when that passes, and at once when the line is full or drains too slowly to reach a newcomer
within the bound (a burst onto a quiet size). While a size has no ready replica
(scaled to zero, starting) requests pass through to Serve's handle queue instead, up to
`max_queued_requests`, because that queue is what Serve's autoscaler sees and scales up from. The
router uses the snapshot to steer `auto` requests away from a size that is scaled to zero, starting,
or saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from cluster.config import ClusterConfig, ModelConfig
from deployments.background import stop_task
from deployments.engines.base import EngineOverloadedError
from deployments.router import SizeCapacity

log = logging.getLogger(__name__)

# The window over which the line's drain rate is measured: long enough to smooth single requests,
# short enough that a size that went quiet a second ago counts as not draining.
RELEASE_WINDOW_S = 1.0

ReplicaCounter = Callable[[], Awaitable[dict[str, int]]]


def serve_replica_counter(app_name: str, deployment_names: dict[str, str]) -> ReplicaCounter:
    """A counter that reads RUNNING replicas per size from the Serve controller.

    It reads the controller's details as the plain dict they arrive in. `serve.status()` returns the
    same facts but first re-validates that dict into pydantic models, which pickles every
    deployment's request-router class: about 100 ms of CPU under the GIL per call with five
    deployments, a stall on every request this replica serves, every `refresh_s`. It remains the
    fallback if the dict's shape changes in another Ray version.
    """
    fallback_logged = False

    def read() -> dict[str, int]:
        nonlocal fallback_logged
        from ray import serve

        try:
            from ray.serve.context import _get_global_client

            client = _get_global_client(raise_if_no_controller_running=False)
            if client is None:
                return {}
            return running_replicas(client.get_serve_details(), app_name, deployment_names)
        except (ImportError, AttributeError, KeyError, TypeError) as error:  # another Ray's internals
            if not fallback_logged:
                fallback_logged = True
                log.warning("reading replica counts through serve.status() (%r)", error)
        app = serve.status().applications.get(app_name)
        if app is None:
            return {}
        counts = {}
        for size, deployment in deployment_names.items():
            status = app.deployments.get(deployment)
            if status is not None:
                states = {str(getattr(k, "value", k)): v for k, v in status.replica_states.items()}
                counts[size] = states.get("RUNNING", 0)
        return counts

    async def count() -> dict[str, int]:
        return await asyncio.to_thread(read)

    return count


def running_replicas(details: dict, app_name: str, deployment_names: dict[str, str]) -> dict[str, int]:
    """RUNNING replicas per size from the controller's instance details (a dict shaped like Serve's
    `ServeInstanceDetails`); a size whose deployment is not listed is left out."""
    app = details["applications"].get(app_name)
    if app is None:
        return {}
    counts = {}
    for size, deployment in deployment_names.items():
        entry = app["deployments"].get(deployment)
        if entry is not None:
            states = [str(getattr(r["state"], "value", r["state"])) for r in entry["replicas"]]
            counts[size] = states.count("RUNNING")
    return counts


class Slot:
    """One admitted request's hold on its size's capacity; `release` is idempotent."""

    def __init__(self, tracker: CapacityTracker, size: str):
        self.tracker = tracker
        self.size = size
        self.released = False

    def release(self) -> None:
        """Give the slot back (the first call counts; later ones do nothing); the first request
        waiting for one, if any, takes it."""
        if not self.released:
            self.released = True
            self.tracker.in_flight[self.size] -= 1
            self.tracker.note_release(self.size)
            self.tracker.hand_over(self.size)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class CapacityTracker:
    """Per-size in-flight counts and ready replicas for one ingress replica.

    Args:
        config: the cluster config (replica and queue limits per size).
        counter: reads ready replicas per size; None treats every size as ready.
        refresh_s: how often the background task calls `counter`.
    """

    def __init__(self, config: ClusterConfig, counter: ReplicaCounter | None = None, refresh_s: float = 2.0):
        self.models: dict[str, ModelConfig] = {m.size: m for m in config.enabled_models()}
        # A replica that runs its size's engine itself (one size, colocated) admits for that engine
        # alone; separate ingress replicas share the size's replicas between them.
        self.ingress_replicas = 1 if config.colocated_model() else config.serving.ingress.num_replicas
        self.max_queue_wait_s = config.serving.ingress.max_queue_wait_s
        self.counter = counter
        self.refresh_s = refresh_s
        self.in_flight: dict[str, int] = dict.fromkeys(self.models, 0)
        # The most requests ever in flight at once per size (tests and /healthz check admission).
        self.peak_in_flight: dict[str, int] = dict.fromkeys(self.models, 0)
        self.ready: dict[str, int] | None = None
        # Requests waiting for a slot, oldest first; each future receives its Slot.
        self.waiting: dict[str, deque[asyncio.Future[Slot]]] = {size: deque() for size in self.models}
        # When slots were given back in the last RELEASE_WINDOW_S: how fast the line drains.
        self.released_at: dict[str, deque[float]] = {size: deque() for size in self.models}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start polling ready replicas (needs a running event loop)."""
        if self.counter is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="capacity-poll")

    async def _poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def refresh(self) -> None:
        """Read ready replicas once; on failure keep the last known counts."""
        if self.counter is None:
            return
        try:
            self.ready = await self.counter()
        except Exception as error:  # the controller may be restarting; routing must go on
            log.warning("could not read replica counts: %r", error)
            return
        for size in self.models:  # more ready replicas: more slots for those waiting
            self.hand_over(size)

    def sizes_expected_up(self) -> list[str]:
        """Sizes that should always have a ready replica (not allowed to scale to zero)."""
        expected = []
        for size, model in self.models.items():
            if model.deployment.min_replicas > 0:
                expected.append(size)
        return expected

    def limit(self, size: str) -> float:
        """Requests this ingress replica may have in flight for `size` before it counts as full.

        With ready replicas: their `max_ongoing_requests` (this replica's share), so admitted work
        goes straight into a replica and never waits in Serve's handle retry back-off. With none
        ready (scaled to zero, starting): `max_queued_requests`, so requests can still queue and
        trigger the scale-up.
        """
        model = self.models[size]
        replicas = (self.ready or {}).get(size, 1)
        if replicas > 0:
            return max(1.0, replicas * model.deployment.max_ongoing_requests / self.ingress_replicas)
        return max(1.0, self._queued_share(size))

    def queue_limit(self, size: str) -> float:
        """Requests that may wait here for one of `size`'s slots: this replica's share of
        `max_queued_requests` while the size has ready replicas (-1: no limit); none while it has
        none (they go on to Serve's handle queue, see `limit`) or when `max_queue_wait_s` is 0."""
        if (self.ready or {}).get(size, 1) < 1 or self.max_queue_wait_s == 0:
            return 0.0
        return self._queued_share(size)

    def _queued_share(self, size: str) -> float:
        """This ingress replica's share of `size`'s `max_queued_requests` (-1: no limit)."""
        queued = self.models[size].deployment.max_queued_requests
        return float("inf") if queued < 0 else queued / self.ingress_replicas

    def snapshot(self) -> dict[str, SizeCapacity]:
        """Capacity per size for the router; sizes with unknown replica counts count as ready."""
        result = {}
        for size in self.models:
            ready = 1 if self.ready is None else self.ready.get(size, 1)
            result[size] = SizeCapacity(
                ready_replicas=ready, queue_full=self.in_flight[size] >= self.limit(size)
            )
        return result

    def admit(self, size: str) -> Slot:
        """Take one of `size`'s admission slots without waiting, or refuse at once.

        The caller holds the slot until the request's last byte (streamed or not) and releases it
        once; a stream therefore counts from admission, not from its first token.

        Raises:
            EngineOverloadedError: `size` already has its share of requests in flight, or others
                are waiting for a slot (429).
        """
        if self.in_flight[size] >= self.limit(size) or self.waiting[size]:
            raise EngineOverloadedError(f"{size} has {self.in_flight[size]} requests in flight")
        return self._take(size)

    async def acquire(self, size: str) -> Slot:
        """Take one of `size`'s slots, waiting in line for one while the size is full and fewer
        than `queue_limit` requests wait already (as Serve's handle queues past
        `max_ongoing_requests`), for at most `max_queue_wait_s`. A waiter that is cancelled (client
        gone, deadline) leaves the line.

        Raises:
            EngineOverloadedError: the size is full and so is its line (429, at once), or no slot
                came free within `max_queue_wait_s` (429 then).
        """
        try:
            return self.admit(size)
        except EngineOverloadedError:
            pass
        self._refuse_unless_line_has_room(size)
        line = self.waiting[size]
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        line.append(waiter)
        try:
            # wait_for returns the slot if it was handed over as the time ran out.
            return await asyncio.wait_for(waiter, self.max_queue_wait_s)
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                waiter.result().release()  # handed a slot just as it left: pass it on
            else:
                waiter.cancel()  # hand_over skips it; leaving it in the deque costs one check
                with contextlib.suppress(ValueError):
                    line.remove(waiter)
            if isinstance(error, asyncio.TimeoutError):
                raise EngineOverloadedError(
                    f"{size} had no free slot within {self.max_queue_wait_s} s "
                    f"({self.in_flight[size]} in flight, {len(line)} waiting)"
                ) from None
            raise

    def refuse_if_full(self, size: str) -> None:
        """Refuse now what `acquire` would refuse without waiting: called before any task is made for
        the request, so a burst's 429s cost the event loop as little as possible.

        Raises:
            EngineOverloadedError: the size is full and its line cannot take one more (429).
        """
        if self.in_flight[size] >= self.limit(size) or self.waiting[size]:
            self._refuse_unless_line_has_room(size)

    def _refuse_unless_line_has_room(self, size: str) -> None:
        line = self.waiting[size]
        if len(line) >= self.queue_limit(size):
            raise EngineOverloadedError(
                f"{size} has {self.in_flight[size]} requests in flight and {len(line)} waiting"
            )
        if (
            self.max_queue_wait_s is not None
            and len(line) + 1 > self.drain_rate(size) * self.max_queue_wait_s
        ):
            # Slots are not coming back fast enough to reach this place in line within the
            # bound: refuse now rather than after it (a burst onto a quiet size is refused at once).
            raise EngineOverloadedError(
                f"{size} has {self.in_flight[size]} requests in flight and {len(line)} waiting, "
                f"more than frees up within {self.max_queue_wait_s} s"
            )

    def note_release(self, size: str) -> None:
        """Record that a slot of `size` came back (for `drain_rate`)."""
        self.released_at[size].append(time.monotonic())
        self._forget_old_releases(size)  # here too, so the record stays a second long under load

    def drain_rate(self, size: str) -> float:
        """Slots of `size` given back per second over the last RELEASE_WINDOW_S."""
        self._forget_old_releases(size)
        return len(self.released_at[size]) / RELEASE_WINDOW_S

    def _forget_old_releases(self, size: str) -> None:
        released = self.released_at[size]
        horizon = time.monotonic() - RELEASE_WINDOW_S
        while released and released[0] < horizon:
            released.popleft()

    def hand_over(self, size: str) -> None:
        """Give free slots of `size` to the requests waiting longest."""
        line = self.waiting[size]
        while line and self.in_flight[size] < self.limit(size):
            waiter = line.popleft()
            if not waiter.done():
                waiter.set_result(self._take(size))

    def _take(self, size: str) -> Slot:
        self.in_flight[size] += 1
        self.peak_in_flight[size] = max(self.peak_in_flight[size], self.in_flight[size])
        return Slot(self, size)

    async def close(self) -> None:
        """Stop polling."""
        await stop_task(self._task)
        self._task = None
