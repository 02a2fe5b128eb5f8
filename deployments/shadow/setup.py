"""Wiring of the learning loop into an ingress replica: the shadow runner, its label writer, and the
calibration reloader, started on the replica's event loop and reconfigured without a restart."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cluster.config import ClusterConfig
from cluster.shadow_config import ShadowConfig
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
        """Apply Serve's `user_config` (`{"shadow": {...}}`, fields of `router.shadow`) without a
        restart: sampling on or off, its rate and limits. The output cannot change at run time.

        Raises:
            pydantic.ValidationError: for an unknown or invalid field (Serve then keeps the old one).
        """
        if not user_config or "shadow" not in user_config or self.shadow is None:
            return
        settings = dict(self.shadow.config.model_dump(), **user_config["shadow"])
        settings["output"] = self.shadow.config.output
        self.shadow.reconfigure(ShadowConfig.model_validate(settings))
        log.info(
            "shadow answers now %s at rate %s",
            "on" if self.shadow.config.enabled else "off",
            self.shadow.config.sample_rate,
        )

    async def close(self) -> None:
        """Stop the reloader (the shadow runner is closed with the service, writing its buffer)."""
        if self.reloader is not None:
            await self.reloader.close()
