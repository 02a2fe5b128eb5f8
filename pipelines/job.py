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
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa

from cluster.catalog import SIZES
from cluster.config import ClusterConfig, ModelConfig
from pipelines.documents import KIND_MANIFEST, ExpansionSettings, kind_from_name
from pipelines.results import ResultLayout, scan_results, write_results
from pipelines.resume import KEY_COLUMNS, DoneIndex, duplicate_keys
from pipelines.routing import RoutePlan, branch_items
from pipelines.storage import Location, Storage, StorageOptions, parse_uri
from pipelines.summary import JobSummary, ProgressReporter, RunCounters
from pipelines.tasks import TaskCatalog

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["model", "error_kind", "prompt_tokens", "completion_tokens"]


class BatchJobError(ValueError):
    """The job cannot start as asked (bad arguments or config); nothing was written."""


def utc_today() -> date:
    """Today's date in UTC: the default partition, the same wherever the scheduler runs."""
    return datetime.now(timezone.utc).date()


@dataclass(frozen=True)
class BatchJobSpec:
    """One run of the batch command.

    Attributes:
        input_uri: prefix (or single file) to read: `s3://bucket/prefix/` or a local path.
        output_uri: prefix results are written under, in `date=YYYY-MM-DD/`.
        task: describe, transcribe, summarize, classify, extract or custom.
        config: the cluster config (models, router, batch section, Ray, object store).
        prompt: the custom prompt (`--prompt`).
        run_date: the date partition.
        s3_endpoint: S3 endpoint override; None uses the config, then `AWS_ENDPOINT_URL`.
    """

    input_uri: str
    output_uri: str
    task: str
    config: ClusterConfig
    prompt: str | None = None
    run_date: date = field(default_factory=utc_today)
    s3_endpoint: str | None = None


@dataclass(frozen=True)
class JobPlan:
    """What the driver decided before starting Ray: locations, sizes, settings."""

    spec: BatchJobSpec
    storage_options: StorageOptions
    input: Location
    layout: ResultLayout
    models: list[ModelConfig]
    catalog: TaskCatalog

    @property
    def routed(self) -> bool:
        """Whether rows are scored and routed (else all go to `batch.default_size`)."""
        return self.spec.config.router.enabled

    def expansion_settings(self) -> ExpansionSettings:
        """Page expansion settings from the config; pages are rendered to the largest engine limit."""
        batch = self.spec.config.batch
        return ExpansionSettings(
            run_task=self.spec.task,
            pdf_dpi=batch.pdf_dpi,
            target_pixels=max(m.engine.image_max_pixels for m in self.models),
            max_pages_per_doc=batch.max_pages_per_doc,
            max_input_bytes=batch.max_input_bytes,
            max_text_chars=batch.max_text_chars,
            image_format=batch.image_format,
            custom_prompt_available=self.catalog.custom_prompt is not None,
        )


def plan_job(spec: BatchJobSpec) -> JobPlan:
    """Validate the job's arguments against the config.

    Raises:
        BatchJobError: naming what is wrong.
    """
    config = spec.config
    try:
        catalog = TaskCatalog(config.batch.tasks, spec.prompt)
        catalog.check_task(spec.task)
        if spec.prompt and spec.task != "custom":
            raise ValueError("--prompt is for --task custom; the other tasks use their templates")
        input_location, output_location = parse_uri(spec.input_uri), parse_uri(spec.output_uri)
    except ValueError as error:
        raise BatchJobError(str(error)) from None
    check_constraint(catalog, spec.task)
    if config.router.enabled:
        models = config.enabled_models()
    else:
        model = config.model_by_name(config.batch.default_size)
        if model is None:
            raise BatchJobError(
                f"batch.default_size {config.batch.default_size!r} is not an enabled model; enable it or "
                "turn the router on"
            )
        models = [model]
    if config.router.enabled:
        check_colocated_gpu_memory(config, models)
    endpoint = spec.s3_endpoint or config.object_store.resolved_endpoint()
    return JobPlan(
        spec=spec,
        storage_options=StorageOptions(endpoint_url=endpoint, region=config.object_store.region),
        input=input_location,
        layout=ResultLayout(output_location, spec.run_date, spec.task),
        models=models,
        catalog=catalog,
    )


def check_colocated_gpu_memory(config: ClusterConfig, models: list[ModelConfig]) -> None:
    """Fail before any work when the vLLM engines one colocated actor holds would claim more GPU memory
    than the actor reserves (each vLLM engine takes its `gpu_memory_utilization` of the device).

    Raises:
        BatchJobError: naming the sizes and what they claim.
    """
    from cluster.k8s.groups import engine_gpu_memory_claim

    batch = config.batch
    share = min(batch.colocated_pool.num_gpus, 1.0)
    if not batch.colocate_sizes or share == 0:
        return
    claims = {m.size: engine_gpu_memory_claim(m) for m in models if m.engine.kind == "vllm"}
    if sum(claims.values()) > share + 1e-9:
        listed = ", ".join(f"{size} {claim:g}" for size, claim in claims.items())
        raise BatchJobError(
            f"batch.colocate_sizes: one actor holds every size's engine, and their vLLM "
            f"gpu_memory_utilization adds up to {sum(claims.values()):g} ({listed}) of a GPU, more than "
            f"the {share:g} batch.colocated_pool.num_gpus reserves; lower engine_kwargs.gpu_memory_utilization "
            "or keep a pool per size"
        )


def check_constraint(catalog: TaskCatalog, task: str) -> None:
    """Fail before any work when the task's decoding constraint (extract schema, classify labels)
    uses something the constrained decoder cannot compile.

    Raises:
        BatchJobError: naming the problem.
    """
    structured = catalog.structured(task)
    if structured is None:
        return
    from deployments.engines.base import EngineRequestError
    from deployments.engines.structured import validate_structured

    try:
        validate_structured(structured)
    except EngineRequestError as error:
        what = "the extract schema" if task == "extract" else "the classify labels"
        raise BatchJobError(f"{what} cannot be decoded under: {error.message}") from None


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
