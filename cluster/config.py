"""The cluster config: one typed file drives serving, routing, batch jobs and Kubernetes.

Loaded from YAML (a shipped profile or a user file), validated once at start-up. Every field has a
description; unknown keys and bad values fail with the dotted path of the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cluster.base_config import StrictModel
from cluster.batch_config import BatchConfig
from cluster.catalog import CATALOG, ModelSize, ModelSpec, Variant
from cluster.kubernetes_config import KubernetesConfig
from cluster.router_config import RouterConfig

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILES = ("demo", "cpu", "gpu")
AUTO_MODEL = "auto"


def default_cache_dir() -> Path:
    """Where generated demo checkpoints live: `$QWEN_CLUSTER_CACHE` or `~/.cache/qwen-cluster`."""
    return Path(os.environ.get("QWEN_CLUSTER_CACHE", Path.home() / ".cache" / "qwen-cluster"))


class ConfigError(ValueError):
    """The config is invalid; the message names every offending field."""


class EngineConfig(StrictModel):
    """Which inference engine a model server runs and how (mirrors Ray Serve LLM's engine_kwargs)."""

    kind: Literal["transformers", "vllm"] = Field("transformers", description="Engine implementation.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device for the transformers engine; `auto` takes CUDA when present."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; `auto` is bfloat16 on GPU and float32 on CPU."
    )
    max_model_len: int = Field(
        32_768, ge=256, le=262_144, description="Longest prompt plus completion, in tokens."
    )
    max_batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="Most requests decoding or prefilling at once (transformers engine's running batch).",
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description=(
            "While rows decode, how long the loop waits for requests still being tokenized so they are "
            "prefilled together (an idle loop waits up to 50 ms for a burst)."
        ),
    )
    prefill_defer_steps: int = Field(
        0,
        ge=0,
        le=16,
        description=(
            "Transformers engine: while the running batch is at least half full and fewer than a quarter "
            "of it waits, how many decode steps new requests may wait so that they are prefilled "
            "together (each prefill is a forward pass of its own). Trades time to first token for "
            "requests/s at high concurrency: 2 gave 1.06-1.12x requests/s at c32 on the demo checkpoint "
            "and up to two decode steps more before a first token (docs/performance.md). 0 prefills "
            "every arrival at the next step."
        ),
    )
    max_images_per_prompt: int = Field(4, ge=0, le=64, description="Most images one request may carry.")
    image_min_pixels: int = Field(
        32 * 32, ge=16 * 16, description="Smallest image area the processor resizes up to, in pixels."
    )
    image_max_pixels: int = Field(
        1280 * 28 * 28, ge=32 * 32, description="Largest image area the processor resizes down to."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per replica; None keeps torch's default."
    )
    pack_cpu_weights: bool = Field(
        True,
        description=(
            "Transformers engine on a CPU with bfloat16 weights: pack every linear layer's weight once "
            "for oneDNN, as vLLM's CPU backend does, instead of oneDNN reordering it at every call (same "
            "outputs; 1.2-1.8x faster decode steps on the real 0.8B dimensions, docs/performance.md). The "
            "output head's packed copy is extra memory (about 0.5 GB on the 0.8B), as it shares its "
            "weight with the token embedding."
        ),
    )
    grammar_compile_timeout_s: float | None = Field(
        10.0,
        gt=0,
        description=(
            "Longest one structured-output grammar may take to compile (transformers engine) before "
            "its request is refused with a 400; the compile itself runs on to the end on its thread. "
            "None waits however long it takes (batch jobs, whose one schema every row shares)."
        ),
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments passed through to the engine (vLLM AsyncEngineArgs).",
    )

    @model_validator(mode="after")
    def _pixels_ordered(self) -> EngineConfig:
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError("image_min_pixels must not exceed image_max_pixels")
        return self


class AutoscalingConfig(StrictModel):
    """Ray Serve autoscaling for one deployment (same names as Serve's autoscaling_config)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas; 0 lets the size scale to zero.")
    max_replicas: int = Field(1, ge=1, description="Most replicas.")
    initial_replicas: int | None = Field(None, ge=0, description="Replicas at deploy time.")
    target_ongoing_requests: float = Field(
        8.0, gt=0, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(10.0, ge=0, description="How long load must stay high before scaling up.")
    downscale_delay_s: float = Field(
        300.0, ge=0, description="How long load must stay low before scaling down."
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self

    def to_serve(self) -> dict[str, Any]:
        """The dict Serve's `autoscaling_config` option takes."""
        return self.model_dump(exclude_none=True)


class DeploymentConfig(StrictModel):
    """Serve deployment options for one model size."""

    num_replicas: int | None = Field(
        None, ge=0, description="Fixed replica count; leave unset to use autoscaling_config."
    )
    autoscaling_config: AutoscalingConfig | None = Field(
        None, description="Autoscaling bounds and target; exclusive with num_replicas."
    )
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        description=(
            "Requests one replica takes at once (cover max_batch_size and the next batch); the ingress "
            "admits this many per ready replica and holds the next ones in its line (max_queued_requests)."
        ),
    )
    max_queued_requests: int = Field(
        64,
        ge=-1,
        description=(
            "Requests that may wait for a slot past max_ongoing_requests, as in Serve; -1 is no limit. "
            "With ready replicas they wait in the ingress's own first-come line (each ingress replica "
            "holds its share) for up to serving.ingress.max_queue_wait_s; with none (scaled to zero, "
            "starting) they go on to Serve's handle queue, which drives the scale-up. Past it: 429."
        ),
    )
    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs one replica reserves.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs one replica reserves; fractions share a GPU.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. `A10G`, `H100`.")
    health_check_period_s: float = Field(10.0, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float = Field(30.0, gt=0, description="Seconds a health check may take.")
    graceful_shutdown_wait_loop_s: float = Field(
        2.0, gt=0, description="Seconds between checks for drained requests at shutdown."
    )
    graceful_shutdown_timeout_s: float = Field(
        30.0, ge=0, description="Seconds a stopping replica waits for ongoing requests."
    )

    @property
    def min_replicas(self) -> int:
        """Replicas the size always keeps (0: it may scale to zero)."""
        if self.autoscaling_config is not None:
            return self.autoscaling_config.min_replicas
        return 1 if self.num_replicas is None else self.num_replicas

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> DeploymentConfig:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set either num_replicas or autoscaling_config, not both")
        if self.max_queued_requests == 0:  # Serve refuses 0 when the deployment starts: say so here
            raise ValueError(
                "max_queued_requests must be -1 (no limit) or positive, as Serve requires; to refuse as "
                "soon as the replicas are full, set serving.ingress.max_queue_wait_s: 0"
            )
        return self

    def serve_options(self) -> dict[str, Any]:
        """Options for `Deployment.options(...)`."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": actor,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_wait_loop_s": self.graceful_shutdown_wait_loop_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = self.autoscaling_config.to_serve()
        else:
            options["num_replicas"] = 1 if self.num_replicas is None else self.num_replicas
        return options


class ModelConfig(StrictModel):
    """One served size."""

    size: ModelSize = Field(description="Which Qwen3.5 size this is (0.8b, 2b, 4b, 9b).")
    enabled: bool = Field(True, description="Deploy this size.")
    variant: Variant = Field("instruct", description="Post-trained `instruct` or pre-trained `base`.")
    checkpoint: str | None = Field(
        None, description="Hugging Face id or local path; default is the catalog id for the variant."
    )
    random_weights: bool = Field(
        False, description="Serve a generated random-weight demo checkpoint (offline; answers are noise)."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Inference engine settings.")
    deployment: DeploymentConfig = Field(
        default_factory=DeploymentConfig, description="Serve replicas, queueing and resources."
    )

    @property
    def spec(self) -> ModelSpec:
        """The catalog entry of this size."""
        return CATALOG[self.size]

    @property
    def public_name(self) -> str:
        """The name clients use in the `model` field."""
        return self.spec.public_name

    @property
    def deployment_name(self) -> str:
        """Serve deployment name (dots are not allowed in Serve names)."""
        return "model-" + self.size.replace(".", "_")

    def resolved_checkpoint(self, cache_dir: Path) -> str:
        """Where the engine loads weights from."""
        if self.random_weights:
            return str(cache_dir / "demo-models" / self.public_name)
        return self.checkpoint or self.spec.hf_id(self.variant)


class AuthConfig(StrictModel):
    """Optional bearer-token auth on the OpenAI API."""

    enabled: bool = Field(False, description="Require `Authorization: Bearer <key>` on /v1 routes.")
    keys_env: str = Field("QWEN_API_KEYS", description="Env var holding comma-separated API keys.")
    keys_file: Path | None = Field(None, description="File holding one API key per line.")


class S3MediaConfig(StrictModel):
    """The allow-list of `s3://` image URLs: the server's credentials must not read any object a caller names."""

    allow: list[str] = Field(
        default_factory=list,
        description=(
            "Buckets or bucket/prefix entries (`bucket`, `bucket/images/`) whose objects s3:// image "
            "URLs may name; empty refuses every s3:// image URL."
        ),
    )

    @field_validator("allow")
    @classmethod
    def _entries(cls, entries: list[str]) -> list[str]:
        cleaned = []
        for entry in entries:
            entry = entry.removeprefix("s3://")
            if not entry or entry.startswith("/"):
                raise ValueError(f"s3 allow entry {entry!r} must start with a bucket name")
            cleaned.append(entry)
        return cleaned

    def allows(self, bucket: str, key: str) -> bool:
        """Whether `s3://bucket/key` lies under an allowed bucket or prefix."""
        for entry in self.allow:
            allowed_bucket, _, prefix = entry.partition("/")
            if bucket == allowed_bucket and key.startswith(prefix):
                return True
        return False


class MediaConfig(StrictModel):
    """Limits on images that requests carry or point at."""

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest encoded image accepted.")
    max_image_pixels: int = Field(
        40_000_000, ge=1024, description="Largest decoded image area accepted (guards decompression bombs)."
    )
    fetch_timeout_s: float = Field(10.0, gt=0, description="Time limit for fetching one image URL.")
    allow_private_networks: bool = Field(
        False, description="Allow https image URLs that resolve to loopback, link-local or private addresses."
    )
    s3: S3MediaConfig = Field(
        default_factory=S3MediaConfig,
        description="Which s3:// image URLs requests may name (none by default).",
    )


class LimitsConfig(StrictModel):
    """Per-request limits the ingress enforces before any model work (each a 4xx naming the field)."""

    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (413 past it); sized for a few inline base64 images.",
    )
    max_json_depth: int = Field(64, ge=4, le=1000, description="Deepest JSON nesting a body may have.")
    max_json_elements: int = Field(
        100_000, ge=100, description="Most JSON values (objects, arrays, scalars) one body may hold."
    )
    max_messages: int = Field(1024, ge=1, description="Most messages one chat request may carry.")
    max_parts_per_message: int = Field(64, ge=1, description="Most content parts one message may carry.")
    max_text_chars: int = Field(
        4 * 1024 * 1024, ge=1, description="Most characters of text one request may carry in all."
    )
    max_n: int = Field(8, ge=1, le=128, description="Largest `n` (parallel samples) one request may ask.")
    # Structured-output specs are compiled into grammars, and xgrammar's compile time grows steeply
    # with a spec's size (bench/input_guards.py, 2026-12-02, demo tokenizer: 800 optional properties
    # 0.6 s, 5,000 of them 378 s; a 50,000-value enum 40 s). The limits are OpenAI's published
    # structured-output limits where those compile quickly (1,000 enum values), tightened where they
    # do not: OpenAI allows 5,000 properties but makes every one required, and optional ones cost most.
    max_schema_properties: int = Field(
        1000, ge=1, description="Most object properties one JSON schema (response format, tool) may declare."
    )
    max_schema_enum_values: int = Field(
        1000, ge=1, description="Most enum/const values one JSON schema may hold, and most `choice` options."
    )
    max_structured_chars: int = Field(
        32_000,
        ge=1000,
        description=(
            "Most characters of property names, definition names and enum/const values in one JSON "
            "schema (OpenAI's measure), of `choice` options, or of a regex or grammar."
        ),
    )


# The ingress's Serve deployment name: the app builder names it, the RayService renderer overrides it.
INGRESS_DEPLOYMENT_NAME = "openai-ingress"


class IngressConfig(StrictModel):
    """The OpenAI ingress deployment."""

    num_replicas: int = Field(1, ge=1, description="Ingress replicas.")
    num_cpus: float = Field(0.5, ge=0, description="Logical CPUs one ingress replica reserves.")
    max_ongoing_requests: int = Field(
        512, ge=1, description="Requests one ingress replica takes at once; past that the proxy queues."
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with 429.")
    request_timeout_s: float = Field(120.0, gt=0, description="Longest time one request may take.")
    max_queue_wait_s: float | None = Field(
        1.0,
        ge=0,
        description=(
            "Longest time a request waits in the ingress's line for a slot of a full size before a 429 "
            "(as Triton's queue-policy timeout); 0 refuses as soon as the slots are full, None waits up "
            "to request_timeout_s. One second, the Retry-After a refused client waits anyway: a shorter "
            "bound answered a burst of 128 clients with a storm of 429s whose handling took the cycles "
            "the engine needed (docs/performance.md)."
        ),
    )
    cold_start_timeout_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Extra time a request to a size with no ready replica (scaled to zero, restarting) is "
            "held while the size starts, before a 503 with Retry-After."
        ),
    )
    colocate_single_size: bool = Field(
        True,
        description=(
            "When exactly one size is enabled and it keeps at least one replica, run its engine inside "
            "the ingress replica: one Serve deployment with the size's deployment options, one hop per "
            "request instead of two (the ingress's num_replicas and num_cpus are then unused)."
        ),
    )


class ServingConfig(StrictModel):
    """The HTTP API."""

    host: str = Field("127.0.0.1", description="Address the Serve HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the OpenAI-compatible endpoint.")
    app_name: str = Field("qwen", description="Serve application name.")
    route_prefix: str = Field("/", description="HTTP route prefix of the application.")
    default_model: str = Field(
        AUTO_MODEL, description="Model used when a request names none: a public name or `auto`."
    )
    default_max_tokens: int = Field(
        512, ge=1, description="Completion token limit when a request sets none (capped by max_model_len)."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Bearer API keys.")
    media: MediaConfig = Field(default_factory=MediaConfig, description="Image limits.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request size limits.")
    ingress: IngressConfig = Field(default_factory=IngressConfig, description="Ingress deployment.")


class ObjectStoreConfig(StrictModel):
    """S3 or an S3-compatible store (MinIO, Ceph, moto)."""

    endpoint_url: str | None = Field(
        None, description="Endpoint override; None uses $AWS_ENDPOINT_URL, then AWS's default."
    )
    region: str = Field("us-east-1", description="Region for signing requests.")

    def resolved_endpoint(self) -> str | None:
        """The endpoint to use, with the environment as fallback."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


class RayConfig(StrictModel):
    """How to reach (or start) Ray."""

    address: str | None = Field(None, description="Existing cluster address; None starts a local one.")
    num_cpus: int | None = Field(
        None, ge=1, description="Logical CPUs of a local cluster; None lets Ray count the cores."
    )
    namespace: str = Field("qwen", description="Ray namespace.")
    include_dashboard: bool = Field(False, description="Start the Ray dashboard with a local cluster.")
    metrics_export_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Prometheus port of a local cluster's metrics agent (Ray's default when None).",
    )


class ClusterConfig(StrictModel):
    """The whole cluster: one file drives everything."""

    profile: str = Field("custom", description="Name of the profile this config came from.")
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Cache folder for generated demo checkpoints."
    )
    models: list[ModelConfig] = Field(description="The served sizes.", min_length=1)
    serving: ServingConfig = Field(default_factory=ServingConfig, description="The HTTP API.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Difficulty routing.")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Nightly batch jobs.")
    object_store: ObjectStoreConfig = Field(
        default_factory=ObjectStoreConfig, description="Object storage endpoint."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster to use.")
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig, description="KubeRay rendering.")

    @field_validator("models")
    @classmethod
    def _unique_sizes(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        sizes = [m.size for m in models]
        duplicates = sorted({s for s in sizes if sizes.count(s) > 1})
        if duplicates:
            raise ValueError(f"each size may appear once; repeated: {', '.join(duplicates)}")
        return sorted(models, key=lambda m: list(CATALOG).index(m.size))

    @model_validator(mode="after")
    def _default_model_served(self) -> ClusterConfig:
        names = [m.public_name for m in self.enabled_models()]
        if not names:
            raise ValueError("models: at least one size must be enabled")
        if self.serving.default_model not in (*names, AUTO_MODEL):
            raise ValueError(
                f"serving.default_model {self.serving.default_model!r} is not served; "
                f"choose `auto` or one of: {', '.join(names)}"
            )
        return self

    def enabled_models(self) -> list[ModelConfig]:
        """Served sizes, smallest first."""
        return [m for m in self.models if m.enabled]

    def model_by_name(self, name: str) -> ModelConfig | None:
        """The enabled size whose public name or size tag is `name`."""
        key = name.lower().removeprefix("qwen3.5-")
        return next((m for m in self.enabled_models() if m.size == key), None)

    def colocated_model(self) -> ModelConfig | None:
        """The one enabled size whose engine runs inside the ingress replica, or None when the
        ingress and each size are deployments of their own (`serving.ingress.colocate_single_size`)."""
        enabled = self.enabled_models()
        # A size that may scale to zero keeps an ingress of its own: something must answer health
        # checks and hold requests while the size starts.
        if (
            self.serving.ingress.colocate_single_size
            and len(enabled) == 1
            and enabled[0].deployment.min_replicas
        ):
            return enabled[0]
        return None

    def serve_deployments(self) -> dict[str, tuple[ModelConfig, dict[str, Any]]]:
        """The Serve deployments that run engines: name -> (size, `Deployment.options(...)`).

        One per enabled size, or the colocated one (`colocated_model`), named as the ingress: it
        takes the size's options, but Serve's limits of an ingress replica (as many requests at once
        as `serving.ingress.max_ongoing_requests`, no queue limit of Serve's own), since its own
        admission holds requests past the engine's slots, up to the size's `max_queued_requests`,
        and answers 429 as a separate ingress would. (Serve counts a direct-ingress request as
        queued until it takes a slot, even a free one: a limit of 64 there dropped bursts of 128
        with 503s.)
        """
        colocated = self.colocated_model()
        if colocated is None:
            return {m.deployment_name: (m, m.deployment.serve_options()) for m in self.enabled_models()}
        options = colocated.deployment.serve_options()
        options["max_ongoing_requests"] = self.serving.ingress.max_ongoing_requests
        options["max_queued_requests"] = -1
        return {INGRESS_DEPLOYMENT_NAME: (colocated, options)}

    @property
    def uses_random_weights(self) -> bool:
        """True when any served size is a random-weight demo checkpoint."""
        return any(m.random_weights for m in self.enabled_models())


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the dotted path of the field."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(p) for p in problem["loc"]) or "<root>"
        lines.append(f"  {path}: {problem['msg']}")
    return "invalid cluster config:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any]) -> ClusterConfig:
    """Validate a config dict.

    Raises:
        ConfigError: naming every offending field.
    """
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def load_config(path: str | Path | None = None, profile: str | None = None) -> ClusterConfig:
    """Load a config file, or a shipped profile (`demo` when neither is given).

    Raises:
        ConfigError: for a missing file, bad YAML, an unknown profile or an invalid field.
    """
    if path is None:
        profile = profile or "demo"
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
        path = PROFILES_DIR / f"{profile}.yaml"
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    if profile is not None and path.parent != PROFILES_DIR:
        data.setdefault("profile", profile)
    return parse_config(data)
