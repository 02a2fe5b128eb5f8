"""Wiring of the learning loop into an ingress replica: the shadow runner, its label writer, and the
calibration reloader, started on the replica's event loop and reconfigured without a restart."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cluster.config import ClusterConfig
from cluster.shadow_config import apply_user_config
from deployments.object_store import ObjectStore
from deployments.router.reload import CalibrationReloader
from deployments.shadow.runner import ShadowRunner
from deployments.shadow.writer import LabelWriter

log = logging.getLogger(__name__)


class LearningLoop:
    """What one ingress replica runs for the router to learn from its traffic.

    Args:
        config: the cluster config.
        clients: a `ModelClient` per served size.
        capacity: the replica's `CapacityTracker`.
        router: the replica's `Router` (its calibration is reloaded in place).
        metrics: `ServingMetrics`, or None.
    """

    def __init__(self, config: ClusterConfig, clients: Mapping[str, Any], capacity, router, metrics=None):
        store = ObjectStore(config.object_store.resolved_endpoint(), config.object_store.region)
        shadow = config.router.shadow
        # `reconfigure` applies each user_config on top of the config's settings, never on top of
        # the last one applied: a replica started later gets the same settings as one running since.
        self.base_shadow = shadow
        self.writer = (
            LabelWriter(shadow.output, store, shadow.flush_rows, shadow.max_buffer_s)
            if shadow.output
            else None
        )
        self.check_interval_s = shadow.check_interval_s
        # Built whenever an output is configured, even disabled, so `reconfigure` can turn it on.
        self.shadow = ShadowRunner(shadow, clients, capacity, self.writer, metrics) if self.writer else None
        reload = config.router.reload
        self.reloader = (
            CalibrationReloader(router, reload.calibration_uri, store, reload.interval_s)
            if reload.calibration_uri and router.scorer is not None
            else None
        )

    def start(self) -> None:
        """Start the writer's and the reloader's loops (idempotent; needs the running loop)."""
        if self.writer is not None:
            self.writer.start(self.check_interval_s)
        if self.reloader is not None:
            self.reloader.start()

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        """Apply Serve's `user_config` (`{"shadow": {...}}`, the fields of
        `cluster.shadow_config.RUNTIME_FIELDS`) without a restart: sampling on or off, its rate and
        limits. A field the user_config leaves out takes the cluster config's value. Checked even
        where no label output is configured, so a user_config that tries to turn sampling on there
        fails loudly instead of doing nothing.

        Raises:
            ValueError: for an unknown key or field, one that cannot change at run time, or an
                invalid value (Serve then reports the update as failed).
        """
        settings = apply_user_config(self.base_shadow, user_config)
        if self.shadow is None:
            return
        self.shadow.reconfigure(settings)
        log.info(
            "shadow answers now %s at rate %s", "on" if settings.enabled else "off", settings.sample_rate
        )

    async def close(self) -> None:
        """Stop the reloader (the shadow runner is closed with the service, writing its buffer)."""
        if self.reloader is not None:
            await self.reloader.close()
