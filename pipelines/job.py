"""The batch job: list the input, route every page, run each size's branch, summarise.

list (driver) -> light pass: read + expand without pixels -> score difficulty -> route table (driver)
-> per size: read + render its pages -> preprocess images -> inference (its actor pool) ->
postprocess -> write result files -> stats to the driver (pipelines in flow.py). Nothing
materialises the input: Ray Data streams blocks through the stages with backpressure; the driver
holds the listing (paths and sizes), the route table (keys and a decision per page) and per-row stats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from cluster.catalog import SIZES
from cluster.config import ClusterConfig
from pipelines.documents import KIND_MANIFEST, kind_from_name
from pipelines.plan import BatchJobError, BatchJobSpec, JobPlan, plan_job
from pipelines.results import ResultLayout, scan_results, write_results
from pipelines.resume import KEY_COLUMNS, DoneIndex, duplicate_keys
from pipelines.routing import RoutePlan, branch_items
from pipelines.storage import Storage
from pipelines.summary import JobSummary, ProgressReporter, RunCounters

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["model", "error_kind", "prompt_tokens", "completion_tokens"]


def list_items(storage: Storage, plan: JobPlan, done: DoneIndex) -> tuple[list[dict[str, Any]], int, int]:
    """The items to read, how many objects were listed, and how many were skipped as complete.

    Objects under the output prefix are left out, so an output inside the input is never read back.
    """
    items: list[dict[str, Any]] = []
    listed = skipped = 0
    for info in storage.list_files(plan.input):
        if info.location.is_within(plan.layout.output):
            continue
        listed += 1
        doc_id = info.location.name if info.location == plan.input else info.location.relative_to(plan.input)
        kind = kind_from_name(info.location.name)
        if kind != KIND_MANIFEST and done.is_complete(doc_id, plan.spec.task):
            skipped += 1
            continue
        items.append({"uri": info.location.uri, "doc_id": doc_id, "size": info.size, "kind": kind})
    return items, listed, skipped


def execute(
    plan: JobPlan, items: list[dict[str, Any]], done: DoneIndex, storage: Storage
) -> Iterator[pa.Table]:
    """Run the job's pipelines over `items`; yields the stats table of every result file written.

    Routing off: one branch reads every page for `batch.default_size`. Routing on: the light pass
    decides each page's size first (nothing rendered; in this process for small listings, else on
    Ray Data), the rows it already failed are written here, then each size's branch reads, renders
    and answers only its own pages; the branches run together (`batch.concurrent_branches`) or one
    after another. With `batch.colocate_sizes` one branch reads every routed page and its actors hold
    every routed size's engine.
    """
    import ray

    from pipelines.flow import branch_dataset, light_dataset, light_rows_local

    batch = plan.spec.config.batch
    done_ref = ray.put(done)
    if not plan.routed:
        yield from _stats(branch_dataset(plan, plan.models[0], items, done_ref))
        return
    routes = RoutePlan()
    failed: list[pa.Table] = []
    if len(items) <= batch.cpu_stages.local_routing_max_documents:
        light = light_rows_local(plan, items, done)
    else:
        light = _stats(light_dataset(plan, items, done_ref))
    for table in light:
        errors = routes.add_decisions(table)
        if errors.num_rows:
            failed.append(errors)
        if sum(t.num_rows for t in failed) >= batch.rows_per_file:
            yield write_results(pa.concat_tables(failed), storage, plan.layout, batch.compression)
            failed = []
    if failed:
        yield write_results(pa.concat_tables(failed), storage, plan.layout, batch.compression)
    routes.finish()
    models = {m.size: m for m in plan.models}
    unknown = sorted(set(routes.tables) - set(models))
    if unknown:
        raise RuntimeError(f"the router chose sizes without a pool: {', '.join(unknown)}")
    log.info(
        "routed %d pages before reading pixels: %s; %d rows failed already",
        routes.rows(),
        ", ".join(f"{size} {len(routes.tables[size])}" for size in SIZES if size in routes.tables) or "none",
        routes.failed,
    )
    if batch.colocate_sizes:
        routed_models = [models[size] for size in SIZES if size in routes.tables]
        if routed_models:
            merged = routes.merged()
            branch = branch_dataset(
                plan,
                routed_models,
                branch_items(items, merged, plan.spec.task, KIND_MANIFEST),
                done_ref,
                ray.put(merged),
                colocated=True,
            )
            yield from _stats(branch)
        return
    branches = [
        branch_dataset(
            plan,
            models[size],
            branch_items(items, routes.tables[size], plan.spec.task, KIND_MANIFEST),
            done_ref,
            ray.put(routes.tables[size]),
        )
        for size in SIZES
        if size in routes.tables
    ]
    if not branches:
        return
    if batch.concurrent_branches:
        yield from _stats(branches[0].union(*branches[1:]) if len(branches) > 1 else branches[0])
    else:
        for branch in branches:
            yield from _stats(branch)


def _stats(dataset) -> Iterator[pa.Table]:
    """Iterate a dataset block by block (which runs it)."""
    yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


def _connect_ray(config: ClusterConfig) -> bool:
    """Join the configured cluster or start a local one; return whether this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if config.ray.address:
        ray.init(address=config.ray.address, namespace=config.ray.namespace)
    else:
        ray.init(
            num_cpus=config.ray.num_cpus,
            include_dashboard=config.ray.include_dashboard,
            namespace=config.ray.namespace,
        )
    return True


def _partition_counts(storage: Storage, layout: ResultLayout) -> tuple[RunCounters, int]:
    table = scan_results(storage, layout, columns=[*KEY_COLUMNS, *SUMMARY_COLUMNS])
    counters = RunCounters()
    counters.add(table)
    return counters, duplicate_keys(table)


def run_batch_job(spec: BatchJobSpec, emit=None) -> JobSummary:
    """Run one batch job to the end and summarise it.

    Args:
        spec: what to run.
        emit: where progress lines go (default: the module logger).

    Raises:
        BatchJobError: for bad arguments or config (before anything is written).
        Exception: whatever stops the pipeline (storage down, a stage failing for good); the rows
            written so far stay, and running the same command again resumes.
    """
    import ray
    from ray.data import DataContext

    plan = plan_job(spec)
    storage = Storage(plan.storage_options)
    # An S3 prefix with no objects is an empty night; a local path that is not there is a wrong path,
    # which would otherwise succeed with nothing read, every night.
    if plan.input.scheme == "file" and not Path(plan.input.path).exists():
        raise BatchJobError(f"input {plan.input.uri} does not exist")
    batch = spec.config.batch
    removed = storage.remove_stale_temporaries(plan.layout.partition, plan.layout.file_prefix)
    if removed:
        log.warning("removed %d temporary files a killed run left in %s", removed, plan.layout.partition.uri)
    done = DoneIndex.from_table(scan_results(storage, plan.layout, columns=list(KEY_COLUMNS)))
    items, listed, skipped = list_items(storage, plan, done)
    log.info(
        "batch %s: %d objects under %s, %d already complete, %d to process; results in %s",
        spec.task,
        listed,
        plan.input.uri,
        skipped,
        len(items),
        plan.layout.partition.uri,
    )
    random_sizes = [m.size for m in plan.models if m.random_weights]
    if random_sizes:
        from deployments.engines.demo_models import ensure_demo_models

        log.warning("sizes %s use RANDOM-WEIGHT demo checkpoints: outputs are noise", ", ".join(random_sizes))
        ensure_demo_models(spec.config.cache_dir, sizes=random_sizes)

    reporter = ProgressReporter(batch.progress_interval_s, emit=emit)
    if items:
        started_ray = _connect_ray(spec.config)
        # Throughput counts from here: Ray's own start-up is not the pipeline's.
        reporter = ProgressReporter(batch.progress_interval_s, emit=emit)
        try:
            context = DataContext.get_current()
            context.enable_progress_bars = batch.ray_progress_bars
            for stats in execute(plan, items, done, storage):
                reporter.update(stats)
        finally:
            if started_ray:
                ray.shutdown()
    elapsed = reporter.elapsed_s
    partition, duplicates = _partition_counts(storage, plan.layout)
    if duplicates:
        log.error("%d result rows repeat another row's key in %s", duplicates, plan.layout.partition.uri)
    return JobSummary(
        input_uri=plan.input.uri,
        partition_uri=plan.layout.partition.uri,
        task=spec.task,
        listed_documents=listed,
        skipped_documents=skipped,
        run=reporter.counters,
        elapsed_s=elapsed,
        partition=partition,
        duplicate_rows=duplicates,
    )
