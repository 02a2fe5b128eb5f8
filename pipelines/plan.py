"""What a batch run is asked to do (`BatchJobSpec`) and what the driver decides from it before Ray
starts (`JobPlan`): locations, sizes, task templates, and the checks that fail a run before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from cluster.config import ClusterConfig, ModelConfig
from pipelines.documents import ExpansionSettings
from pipelines.results import ResultLayout
from pipelines.storage import Location, StorageOptions, parse_uri
from pipelines.tasks import TaskCatalog


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
