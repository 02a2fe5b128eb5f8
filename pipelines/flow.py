"""The Ray Data pipelines of a batch job: the light routing pass and the branches that answer.

Light pass (routed jobs only): listed items -> read + expand without pixels -> score difficulty ->
route rows, collected by the driver into a `RoutePlan`. Branch (one per size with pages, or one for
all of them with `batch.colocate_sizes`): its items -> read + expand only its pages (rendering them)
-> preprocess images -> inference on the branch's actor pool -> postprocess -> write result files ->
stats to the driver. A row reaches one engine only, and pages are rendered once, in the branch that
answers them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cluster.config import ModelConfig
from pipelines.stages import (
    ReadAndExpand,
    ScoreLightRows,
    assign_default_size,
    postprocess,
    preprocess_images,
    write_result_batch,
)

if TYPE_CHECKING:
    from pipelines.plan import JobPlan


def _task_kwargs(plan: JobPlan) -> dict[str, Any]:
    cpu = plan.spec.config.batch.cpu_stages
    kwargs: dict[str, Any] = {"batch_format": "pyarrow", "num_cpus": cpu.num_cpus}
    if cpu.max_tasks:
        kwargs["concurrency"] = cpu.max_tasks
    return kwargs


def _read(plan: JobPlan, items: list[dict[str, Any]], done_ref, **reader_kwargs):
    """Items -> page rows, on the reader actor pool."""
    import ray
    from ray.data import ActorPoolStrategy

    cpu = plan.spec.config.batch.cpu_stages
    blocks = max(1, min(len(items), math.ceil(len(items) / cpu.documents_per_batch)))
    expanded = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        ReadAndExpand,
        fn_constructor_kwargs={
            "storage_options": plan.storage_options,
            "settings": plan.expansion_settings(),
            "done_ref": [done_ref],
            **reader_kwargs,
        },
        batch_size=cpu.documents_per_batch,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=cpu.reader_min_actors, max_size=cpu.reader_max_actors),
        num_cpus=cpu.num_cpus,
    )
    # Ray Data joins a task's output tables into blocks of up to 128 MiB, so one JSONL file of text
    # rows (or a long PDF) came out as one block: one inference task, one busy actor whatever the
    # pool's size, and no result written until the whole file was done. Blocks of `rows_per_task`
    # rows spread the rows over every actor and stream them to the writer.
    return expanded.repartition(target_num_rows_per_block=cpu.rows_per_task)


def light_dataset(plan: JobPlan, items: list[dict[str, Any]], done_ref):
    """The routing pass over every item: iterating it yields route rows (`routing.ROUTE_COLUMNS`)."""
    from ray.data import ActorPoolStrategy

    config, batch = plan.spec.config, plan.spec.config.batch
    ds = _read(plan, items, done_ref, light=True)
    return ds.map_batches(
        ScoreLightRows,
        fn_constructor_kwargs={
            "router_config": config.router,
            "served_sizes": [m.size for m in plan.models],
            "task_settings": batch.tasks,
            "custom_prompt": plan.spec.prompt,
            "thinking": batch.enable_thinking,
        },
        batch_size=batch.cpu_stages.rows_per_task,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=batch.cpu_stages.scorer_actors),
        num_cpus=batch.cpu_stages.num_cpus,
    )


def light_rows_local(plan: JobPlan, items: list[dict[str, Any]], done, rows_per_table: int = 256):
    """The routing pass in this process, for small jobs: the same expansion and scorer as
    `light_dataset`, without starting any actor. Yields route rows."""
    from pipelines.documents import DocumentExpander
    from pipelines.schema import to_work_table
    from pipelines.storage import Storage

    config, batch = plan.spec.config, plan.spec.config.batch
    expander = DocumentExpander(Storage(plan.storage_options), plan.expansion_settings(), done, light=True)
    scorer = ScoreLightRows(
        config.router, [m.size for m in plan.models], batch.tasks, plan.spec.prompt, batch.enable_thinking
    )
    pending: list[dict[str, Any]] = []
    for item in items:
        pending.extend(expander.expand(item))
        if len(pending) >= rows_per_table:
            yield scorer(to_work_table(pending))
            pending = []
    if pending:
        yield scorer(to_work_table(pending))


def branch_dataset(
    plan: JobPlan,
    models: ModelConfig | list[ModelConfig],
    items: list[dict[str, Any]],
    done_ref,
    routes_ref=None,
    colocated: bool = False,
):
    """A branch: iterating it runs its share of the job and yields stats tables.

    Args:
        plan: the job.
        models: the size this branch answers with, or every routed size (a colocated branch, whose
            pool's actors each hold all of their engines).
        items: the listed items to read (those with pages of this branch's sizes, and manifests).
        done_ref: ObjectRef of the resume `DoneIndex`.
        routes_ref: ObjectRef of the branch's `RouteTable`; None when routing is off (every page, to
            the one model, with no difficulty score).
        colocated: the branch of `batch.colocate_sizes`, run on `batch.colocated_pool`.
    """
    from ray.data import ActorPoolStrategy

    from pipelines.inference import InferenceStage

    models = [models] if isinstance(models, ModelConfig) else list(models)
    config, batch = plan.spec.config, plan.spec.config.batch
    task_kwargs = _task_kwargs(plan)
    settings_pixels = max(m.engine.image_max_pixels for m in plan.models)
    ds = _read(plan, items, done_ref, routes_ref=[routes_ref] if routes_ref is not None else None)
    ds = ds.map_batches(
        preprocess_images,
        fn_kwargs={
            "target_pixels": settings_pixels,
            "max_pixels": batch.max_image_pixels,
            "image_format": batch.image_format,
        },
        batch_size=batch.cpu_stages.rows_per_task,
        **task_kwargs,
    )
    if routes_ref is None:
        ds = ds.map_batches(
            assign_default_size,
            fn_kwargs={"size": models[0].size, "thinking": batch.enable_thinking},
            **task_kwargs,
        )
    pool = batch.colocated_pool if colocated else batch.pool_for(models[0].size)
    ds = ds.map_batches(
        InferenceStage,
        fn_constructor_kwargs={
            "models": models,
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
