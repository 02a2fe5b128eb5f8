"""The batch job: list the input, build the streaming Ray Data pipeline, run it, summarise.

Stages (each a UDF from stages.py or inference.py):
list (driver) -> read + expand pages -> preprocess images -> score difficulty -> group by size ->
inference (one actor pool per size) -> postprocess -> write result files -> stats to the driver.
Nothing materialises the input: Ray Data streams blocks through the stages with backpressure, and
only the listing (paths and sizes) and per-row stats live in the driver.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from cluster.config import ClusterConfig, ModelConfig
from pipelines.documents import KIND_MANIFEST, ExpansionSettings, kind_from_name
from pipelines.results import ResultLayout, scan_results
from pipelines.resume import KEY_COLUMNS, DoneIndex, duplicate_keys
from pipelines.stages import (
    ReadAndExpand,
    ScoreDifficulty,
    assign_default_size,
    group_by_size,
    postprocess,
    preprocess_images,
    write_result_batch,
)
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
    endpoint = spec.s3_endpoint or config.object_store.resolved_endpoint()
    return JobPlan(
        spec=spec,
        storage_options=StorageOptions(endpoint_url=endpoint, region=config.object_store.region),
        input=input_location,
        layout=ResultLayout(output_location, spec.run_date, spec.task),
        models=models,
        catalog=catalog,
    )


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


def expansion_settings(plan: JobPlan) -> ExpansionSettings:
    """Page expansion settings from the config; pages are rendered to the largest engine limit."""
    batch = plan.spec.config.batch
    return ExpansionSettings(
        run_task=plan.spec.task,
        pdf_dpi=batch.pdf_dpi,
        target_pixels=max(m.engine.image_max_pixels for m in plan.models),
        max_pages_per_doc=batch.max_pages_per_doc,
        max_input_bytes=batch.max_input_bytes,
        max_text_chars=batch.max_text_chars,
        image_format=batch.image_format,
        custom_prompt_available=plan.catalog.custom_prompt is not None,
    )


def build_dataset(plan: JobPlan, items: list[dict[str, Any]], done_ref):
    """The streaming pipeline over `items`; iterating it runs the job and yields stats tables."""
    import ray
    from ray.data import ActorPoolStrategy

    from pipelines.inference import InferenceStage

    config, batch = plan.spec.config, plan.spec.config.batch
    cpu = batch.cpu_stages
    settings = expansion_settings(plan)
    task_kwargs: dict[str, Any] = {"batch_format": "pyarrow", "num_cpus": cpu.num_cpus}
    if cpu.max_tasks:
        task_kwargs["concurrency"] = cpu.max_tasks

    blocks = max(1, min(len(items), math.ceil(len(items) / cpu.documents_per_batch)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        ReadAndExpand,
        fn_constructor_kwargs={
            "storage_options": plan.storage_options,
            "settings": settings,
            "done_ref": [done_ref],
        },
        batch_size=cpu.documents_per_batch,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=cpu.reader_min_actors, max_size=cpu.reader_max_actors),
        num_cpus=cpu.num_cpus,
    )
    ds = ds.map_batches(
        preprocess_images,
        fn_kwargs={
            "target_pixels": settings.target_pixels,
            "max_pixels": batch.max_image_pixels,
            "image_format": batch.image_format,
        },
        batch_size=cpu.rows_per_task,
        **task_kwargs,
    )
    if plan.routed:
        ds = ds.map_batches(
            ScoreDifficulty,
            fn_constructor_kwargs={
                "router_config": config.router,
                "served_sizes": [m.size for m in plan.models],
                "task_settings": batch.tasks,
                "custom_prompt": plan.spec.prompt,
                "thinking": batch.enable_thinking,
            },
            batch_size=cpu.rows_per_task,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=cpu.scorer_actors),
            num_cpus=cpu.num_cpus,
        )
        ds = ds.map_batches(group_by_size, **task_kwargs)  # per block, as the scorer emitted it
    else:
        ds = ds.map_batches(
            assign_default_size,
            fn_kwargs={"size": plan.models[0].size, "thinking": batch.enable_thinking},
            **task_kwargs,
        )
    for model in plan.models:
        pool = batch.pool_for(model.size)
        ds = ds.map_batches(
            InferenceStage,
            fn_constructor_kwargs={
                "model": model,
                "cache_dir": str(config.cache_dir),
                "task_settings": batch.tasks,
                "custom_prompt": plan.spec.prompt,
                "temperature": batch.temperature,
                "seed": batch.seed,
            },
            batch_size=pool.batch_size,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(
                min_size=pool.min_actors,
                max_size=pool.max_actors,
                max_concurrent_calls_per_actor=pool.concurrent_tasks_per_actor,
            ),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
            **({"accelerator_type": pool.accelerator_type} if pool.accelerator_type else {}),
        )
    ds = ds.map_batches(
        postprocess,
        fn_kwargs={
            "task_settings": batch.tasks,
            "custom_prompt": plan.spec.prompt,
            "fail_on_invalid_output": batch.fail_on_invalid_output,
        },
        **task_kwargs,
    )
    return ds.map_batches(
        write_result_batch,
        fn_kwargs={
            "storage_options": plan.storage_options,
            "layout": plan.layout,
            "compression": batch.compression,
        },
        batch_size=batch.rows_per_file,
        **task_kwargs,
    )


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
            dataset = build_dataset(plan, items, ray.put(done))
            for stats in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
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
