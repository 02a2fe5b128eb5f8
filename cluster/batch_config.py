"""Batch-job section of the cluster config (the jobs are built in pipelines/)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cluster.base_config import StrictModel
from cluster.catalog import ModelSize

TaskName = Literal["describe", "transcribe", "summarize", "classify", "extract", "custom"]
TASK_NAMES: tuple[str, ...] = ("describe", "transcribe", "summarize", "classify", "extract", "custom")


def default_extract_schema() -> dict[str, Any]:
    """A small invoice-like schema, so `--task extract` works before anyone writes one."""
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "date": {"type": "string"},
            "total": {"type": "number"},
            "parties": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title"],
        "additionalProperties": True,
    }


class TaskMaxTokens(StrictModel):
    """Completion budget per task, in tokens."""

    describe: int = Field(256, ge=1, le=32_768, description="max_tokens for `describe`.")
    transcribe: int = Field(
        1024, ge=1, le=32_768, description="max_tokens for `transcribe` (OCR to Markdown)."
    )
    summarize: int = Field(256, ge=1, le=32_768, description="max_tokens for `summarize`.")
    classify: int = Field(16, ge=1, le=32_768, description="max_tokens for `classify` (one label).")
    extract: int = Field(512, ge=1, le=32_768, description="max_tokens for `extract` (one JSON object).")
    custom: int = Field(512, ge=1, le=32_768, description="max_tokens for a custom prompt.")

    def for_task(self, task: str) -> int:
        """The budget of `task`."""
        return int(getattr(self, task))


class TaskSettings(StrictModel):
    """What the built-in prompt templates need."""

    classify_labels: list[str] = Field(
        default_factory=lambda: ["invoice", "receipt", "letter", "form", "report", "other"],
        min_length=2,
        description="Labels `classify` chooses from; the answer must name exactly one of them.",
    )
    extract_schema: dict[str, Any] = Field(
        default_factory=default_extract_schema,
        description="JSON schema (draft 2020-12) of the object `extract` returns; outputs are validated against it.",
    )
    custom_prompt: str | None = Field(
        None, description="Prompt of the `custom` task when the command line gives none (`--prompt`)."
    )
    system_prompt: str | None = Field(None, description="Optional system message sent before every prompt.")
    max_tokens: TaskMaxTokens = Field(
        default_factory=TaskMaxTokens, description="Completion budget per task."
    )

    @field_validator("classify_labels")
    @classmethod
    def _distinct_labels(cls, labels: list[str]) -> list[str]:
        cleaned = [label.strip() for label in labels]
        if any(not label for label in cleaned):
            raise ValueError("labels must not be empty")
        if len({label.lower() for label in cleaned}) != len(cleaned):
            raise ValueError("labels must be distinct (case-insensitively)")
        return cleaned

    @field_validator("extract_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise ValueError(f"not a valid JSON schema: {error.message}") from None
        return schema


class ActorPoolSettings(StrictModel):
    """One inference actor pool (one per model size, or one for every size: `colocate_sizes`)."""

    min_actors: int = Field(1, ge=1, description="Actors started at once and kept for the whole job.")
    max_actors: int = Field(1, ge=1, description="Most actors Ray Data may scale the pool up to.")
    batch_size: int = Field(8, ge=1, le=4096, description="Rows per Ray Data batch handed to one actor call.")
    concurrent_tasks_per_actor: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Ray Data tasks one actor runs at once. Each task carries one block of "
            "`cpu_stages.rows_per_task` rows (or one batch, when batch_size is larger) and submits its "
            "batches together, and the engine batches every row in flight: an actor holds about this times "
            "max(rows_per_task, batch_size) rows (measured: 2 tasks, blocks of 32, batch_size 8: 64 rows; "
            "batch_size 64: 128), which should cover the engine's max_batch_size."
        ),
    )
    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs one actor reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs one actor reserves; fractions share a GPU.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. `A10G`, `H100`.")

    @model_validator(mode="after")
    def _bounds(self) -> ActorPoolSettings:
        if self.min_actors > self.max_actors:
            raise ValueError("min_actors must not exceed max_actors")
        return self


class CpuStageSettings(StrictModel):
    """The CPU stages: reading and page expansion (actors), preprocessing, scoring and writing."""

    reader_min_actors: int = Field(1, ge=1, description="Fewest actors reading objects and expanding pages.")
    reader_max_actors: int = Field(2, ge=1, description="Most actors reading objects and expanding pages.")
    documents_per_batch: int = Field(
        8, ge=1, le=1024, description="Documents one reader call takes (each may expand to many pages)."
    )
    rows_per_task: int = Field(
        32,
        ge=1,
        le=65_536,
        description="Rows one preprocessing or scoring call takes; fewer, larger calls cost less overhead.",
    )
    num_cpus: float = Field(0.5, ge=0, description="Logical CPUs one reader actor or one CPU task reserves.")
    scorer_actors: int = Field(1, ge=1, description="Actors scoring difficulty (each loads the router once).")
    max_tasks: int | None = Field(
        None, ge=1, description="Most concurrent tasks of each task-based stage; None lets Ray Data decide."
    )
    local_routing_max_documents: int = Field(
        2000,
        ge=0,
        description=(
            "Routed jobs listing at most this many objects run the light routing pass (text layers and "
            "image counts, no pixels: about a millisecond a page) in the driver, which saves starting "
            "reader and scorer actors; larger jobs run it on Ray Data. 0 always uses Ray Data."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> CpuStageSettings:
        if self.reader_min_actors > self.reader_max_actors:
            raise ValueError("reader_min_actors must not exceed reader_max_actors")
        return self


class BatchConfig(StrictModel):
    """Defaults for the nightly Ray Data jobs."""

    default_size: ModelSize = Field("0.8b", description="Size used when the router is off.")
    tasks: TaskSettings = Field(
        default_factory=TaskSettings, description="Prompt templates and task settings."
    )
    pdf_dpi: int = Field(
        110,
        ge=36,
        le=600,
        description=(
            "Resolution PDF pages are rendered at; pages larger than the engine's image_max_pixels at this "
            "resolution are rendered smaller to fit it."
        ),
    )
    max_pages_per_doc: int = Field(
        500, ge=1, description="Pages processed per document; later pages are left out (logged as a warning)."
    )
    max_input_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest object read; a larger one becomes an error row."
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1024,
        description="Largest decoded image area accepted; a larger image becomes an error row (decompression bombs).",
    )
    max_text_chars: int = Field(
        16_000,
        ge=100,
        description="Characters per text page; longer text documents are split into pages of this size.",
    )
    image_format: Literal["png", "jpeg"] = Field(
        "png", description="Encoding of rendered pages and resized images handed to the engine."
    )
    enable_thinking: bool | None = Field(
        False, description="Thinking mode; None follows the router's decision (or the model's default)."
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Sampling temperature; None takes the model card's default."
    )
    seed: int | None = Field(
        None, description="Sampling seed, for repeatable outputs where the engine allows."
    )
    default_pool: ActorPoolSettings = Field(
        default_factory=ActorPoolSettings, description="Inference pool settings for sizes not in `pools`."
    )
    pools: dict[ModelSize, ActorPoolSettings] = Field(
        default_factory=dict, description="Inference pool settings per model size."
    )
    cpu_stages: CpuStageSettings = Field(default_factory=CpuStageSettings, description="CPU stage resources.")
    concurrent_branches: bool = Field(
        True,
        description=(
            "Routed jobs: run every size's branch (its reader, pool and writer) at once, as one Ray Data "
            "union; false runs them one after another, so only one size's engines are loaded at a time."
        ),
    )
    colocate_sizes: bool = Field(
        False,
        description=(
            "Routed jobs: one branch instead of one per size. Its reader reads every page once, and each "
            "actor of its pool (`colocated_pool`) holds every routed size's engine, so rows of any size "
            "go to whichever actor is free. For nodes where all sizes fit one actor (CPU, or one large "
            "GPU): engines and readers start once per actor instead of once per size, and no size's pool "
            "sits idle while another's still works. False keeps a pool per size (`pools`), which KubeRay "
            "worker groups pin to their nodes."
        ),
    )
    colocated_pool: ActorPoolSettings = Field(
        default_factory=ActorPoolSettings,
        description="Inference pool settings of the colocated branch (`colocate_sizes`).",
    )
    rows_per_file: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Rows per result file; each file is a commit point, so smaller files lose less on a crash.",
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field(
        "zstd", description="Parquet compression codec of result files."
    )
    fail_on_invalid_output: bool = Field(
        True,
        description="`classify`/`extract` outputs that do not validate are error rows (kind invalid_output).",
    )
    progress_interval_s: float = Field(10.0, gt=0, description="Seconds between progress lines.")
    ray_progress_bars: bool = Field(False, description="Show Ray Data's own progress bars as well.")

    def pool_for(self, size: ModelSize) -> ActorPoolSettings:
        """The inference pool settings of `size`."""
        return self.pools.get(size, self.default_pool)
