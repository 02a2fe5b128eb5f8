"""Hot reload of the router's calibration artifact (`router.reload.calibration_uri`).

The ingress checks the URI every `interval_s`; when the file's bytes changed it parses and checks
them (kind, schema version, served sizes, the scorer it was fitted on) and swaps the router's
`calibration` in one attribute store, so a request in flight sees the old or the new one whole. A bad
or mismatched artifact (an escalation threshold out of range included) is refused, the one in use
kept, and the refusal logged once per distinct file (not on every check). A missing file is no
error: no calibration yet. The escalation threshold an artifact carries rides with it: the router
reads it from the calibration in use (`Router.min_token_prob`), so it changes in the same swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from deployments.background import stop_task
from deployments.object_store import ObjectStore
from deployments.router.calibration import parse_calibration
from deployments.router.escalation import artifact_threshold_problem

log = logging.getLogger(__name__)


class CalibrationReloader:
    """Keeps `router.calibration` in step with the artifact at `uri`.

    Args:
        router: the `Router` whose calibration it sets.
        uri: where `qwen-cluster router retrain` writes the artifact.
        store: object storage.
        interval_s: seconds between checks.
    """

    def __init__(self, router, uri: str, store: ObjectStore, interval_s: float = 300.0):
        self.router = router
        self.uri = uri
        self.store = store
        self.interval_s = interval_s
        self.loaded_digest: str | None = None
        self.refused_digests: set[str] = set()
        self.loads = 0
        self._task: asyncio.Task | None = None

    def check(self) -> str:
        """Check once (blocking I/O: call it from a thread); returns what happened: `loaded`,
        `unchanged`, `missing`, `refused` or `unreadable`."""
        try:
            data = self.store.read_bytes(self.uri)
        except FileNotFoundError:
            return "missing"
        except OSError as error:
            log.warning("could not read calibration %s: %r", self.uri, error)
            return "unreadable"
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.loaded_digest:
            return "unchanged"
        if digest in self.refused_digests:
            return "refused"
        try:
            calibration = parse_calibration(
                data, served_sizes=self.router.served_sizes, scorer=self.router.scorer_name
            )
        except ValueError as error:
            self.refused_digests.add(digest)
            log.error("refused calibration %s (keeping the one in use): %s", self.uri, error)
            return "refused"
        self.router.calibration = calibration
        self.loaded_digest = digest
        self.loads += 1
        log.info(
            "loaded router calibration %s (version %s); escalation min_token_prob now %s",
            self.uri,
            calibration.version or "?",
            self.router.min_token_prob,
        )
        rule = self.router.config.escalation
        if calibration.escalation is not None and rule.threshold_from_artifact:
            problem = artifact_threshold_problem(rule, calibration.escalation)
            if problem is not None:  # logged once per file: a file is loaded once
                log.warning("not applying the calibration's escalation threshold: %s", problem)
        return "loaded"

    def start(self) -> None:
        """Check now and then every `interval_s` (needs a running loop; idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="calibration-reload")

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never let the loop die; the next check tries again
                log.exception("calibration check failed")
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        """Stop checking."""
        await stop_task(self._task)
        self._task = None
