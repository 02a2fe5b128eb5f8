"""The CPU stages of the batch pipeline, as Ray Data UDFs over `WORK_SCHEMA` tables.

A routed job runs two passes (see job.py). Light pass: read + expand without pixels (actors: they
hold the resume index) -> score difficulty (actors: each builds the router once) -> route rows to
the driver. Then per size: read + expand only that size's pages (actors holding its route table) ->
preprocess images (tasks) -> inference (inference.py, the size's actor pool) -> postprocess (tasks)
-> write (tasks). With routing off there is one branch, which reads every page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from cluster.batch_config import TaskSettings
from cluster.router_config import RouterConfig
from pipelines.documents import DocumentExpander, ExpansionSettings
from pipelines.imaging import fit_image
from pipelines.results import ResultLayout, write_results
from pipelines.routing import to_route_rows
from pipelines.schema import KIND_IMAGE, RowError, fail_row, rows_of, to_work_table
from pipelines.storage import Storage, StorageOptions
from pipelines.tasks import TaskCatalog

log = logging.getLogger(__name__)

# Ray Data hands listed items to the reader as a table with these columns.
ITEM_COLUMNS = ("uri", "doc_id", "size", "kind")


class ReadAndExpand:
    """Reads listed objects and expands them into page rows, yielding a table every few pages so a
    long PDF streams instead of piling up in one block.

    Args:
        storage_options: how to reach object storage.
        settings: expansion limits.
        done_ref: a one-element list holding the ObjectRef of the resume `DoneIndex` (in a list, so Ray
            passes the reference instead of resolving it per call).
        rows_per_chunk: pages per yielded table.
        light: the routing pass: no rendering, no image reads (see `DocumentExpander`).
        routes_ref: a one-element list holding the ObjectRef of a size's `RouteTable`: read only its
            pages, and stamp each row with its routing decision.
    """

    def __init__(
        self,
        storage_options: StorageOptions,
        settings: ExpansionSettings,
        done_ref: list,
        rows_per_chunk: int = 8,
        light: bool = False,
        routes_ref: list | None = None,
    ):
        import ray

        self.routes = ray.get(routes_ref[0]) if routes_ref else None
        self.expander = DocumentExpander(
            Storage(storage_options), settings, ray.get(done_ref[0]), light=light, routes=self.routes
        )
        self.rows_per_chunk = rows_per_chunk

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        missing = [name for name in ITEM_COLUMNS if name not in batch.column_names]
        if missing:
            raise ValueError(f"listed items lack columns: {', '.join(missing)}")
        pending: list[dict[str, Any]] = []
        for item in batch.select(list(ITEM_COLUMNS)).to_pylist():
            for row in self.expander.expand(item):
                pending.append(row if self.routes is None else self.routes.apply(row))
                if len(pending) >= self.rows_per_chunk:
                    yield to_work_table(pending)
                    pending = []
        if pending:
            yield to_work_table(pending)


def preprocess_images(batch: pa.Table, *, target_pixels: int, max_pixels: int, image_format: str) -> pa.Table:
    """Check every image row and shrink it to the engine's limit; bad images become error rows."""
    rows = rows_of(batch)
    for row in rows:
        if row["error_kind"] is None and row["kind"] == KIND_IMAGE:
            try:
                row["image"] = fit_image(
                    row["image"],
                    target_pixels=target_pixels,
                    max_pixels=max_pixels,
                    image_format=image_format,
                )
            except RowError as error:
                fail_row(row, error.kind, error.message)
    return to_work_table(rows)


def assign_default_size(batch: pa.Table, *, size: str, thinking: bool | None) -> pa.Table:
    """Routing off: every row goes to one size, with no difficulty score."""
    rows = rows_of(batch)
    for row in rows:
        row["size"] = size
        row["thinking"] = thinking
    return to_work_table(rows)


class ScoreDifficulty:
    """Scores each row's difficulty with the router and picks its size (router built once per actor).

    Args:
        router_config: the router section of the cluster config.
        served_sizes: sizes with an inference pool.
        task_settings: to build the same prompt the model will see.
        custom_prompt: the job's `--prompt`.
        thinking: the config's thinking setting; None follows the router's decision.
    """

    def __init__(
        self,
        router_config: RouterConfig,
        served_sizes: list[str],
        task_settings: TaskSettings,
        custom_prompt: str | None,
        thinking: bool | None,
    ):
        from deployments.router import build_router

        self.router = build_router(router_config, served_sizes=served_sizes)
        self.catalog = TaskCatalog(task_settings, custom_prompt)
        self.thinking = thinking

    def __call__(self, batch: pa.Table) -> pa.Table:
        from deployments.router.routing_input import from_request

        rows = rows_of(batch)
        live = [row for row in rows if row["error_kind"] is None]
        if live:
            decisions = self.router.decide_many(
                [
                    from_request(self.catalog.messages(row), None, self._structure(row["task"]))
                    for row in live
                ]
            )
            for row, decision in zip(live, decisions, strict=True):
                row["size"] = decision.size
                row["difficulty"] = decision.difficulty
                row["thinking"] = decision.thinking if self.thinking is None else self.thinking
        return to_work_table(rows)


    def _structure(self, task: str) -> tuple[str, ...]:
        # The same signal an API request with a schema or a choice gives the router.
        return ("structured",) if self.catalog.structured(task) is not None else ()


class ScoreLightRows(ScoreDifficulty):
    """The light pass's scorer: scores like `ScoreDifficulty`, then keeps only keys, decisions and
    errors (no text) for the driver's route table; on the scorer's actors, so the light pass needs no
    task stage of its own (a task per block costs a worker start on a busy machine)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_route_rows(super().__call__(batch))


def postprocess(
    batch: pa.Table, *, task_settings: TaskSettings, custom_prompt: str | None, fail_on_invalid_output: bool
) -> pa.Table:
    """Strip thinking, validate classify/extract answers, and drop the page payloads."""
    catalog = TaskCatalog(task_settings, custom_prompt)
    rows = rows_of(batch)
    for row in rows:
        row["image"] = None
        row["text"] = None
        if row["error_kind"] is not None or row["output"] is None:
            continue
        checked = catalog.validate(row["task"], row["output"])
        row["output"] = checked.output
        row["output_json"] = checked.output_json
        if checked.error and fail_on_invalid_output:
            row["error"], row["error_kind"] = checked.error, checked.error_kind
    return to_work_table(rows)


def write_result_batch(
    batch: pa.Table, *, storage_options: StorageOptions, layout: ResultLayout, compression: str
) -> pa.Table:
    """Write one result file and hand its stats rows on to the driver."""
    return write_results(batch, Storage(storage_options), layout, compression)
