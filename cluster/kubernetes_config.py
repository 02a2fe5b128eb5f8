"""Kubernetes section of the cluster config (rendered to KubeRay manifests in cluster/k8s/).

Everything the manifests say comes from here or from the rest of the cluster config; the renderers
read nothing else (no environment, no clock), so rendering is byte-stable. Sizes, replicas and GPU
fractions come from `models[].deployment`; this section adds what only Kubernetes needs: the image,
node groups, secrets, probes, the nightly job's schedule and the dev/prod overlays.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cluster.base_config import StrictModel, check_cron_schedule
from cluster.batch_config import TASK_NAMES
from cluster.catalog import ModelSize
from cluster.retrain_job_config import RetrainJobConfig

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class GpuType(StrictModel):
    """A GPU model that nodes offer, found by a node label."""

    product: str = Field(description="Value of the GPU node label, e.g. `NVIDIA-L4`.")
    memory_gib: float = Field(gt=0, description="Usable memory of one GPU, in GiB.")


def default_gpu_types() -> list[GpuType]:
    """Common data-centre GPUs, smallest first; derived worker groups take the first that fits."""
    return [
        GpuType(product="NVIDIA-L4", memory_gib=22.0),
        GpuType(product="NVIDIA-L40S", memory_gib=44.0),
        GpuType(product="NVIDIA-A100-SXM4-80GB", memory_gib=79.0),
        GpuType(product="NVIDIA-H100-80GB-HBM3", memory_gib=79.0),
    ]


class HeadConfig(StrictModel):
    """The Ray head pod: GCS, dashboard, Serve controller and the batch driver; no replicas (num-cpus 0)."""

    cpu: str = Field("4", pattern=QUANTITY, description="CPU request and limit of the head container.")
    memory: str = Field(
        "16Gi", pattern=QUANTITY, description="Memory request and limit of the head container."
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Type of the head Service KubeRay creates."
    )


class CpuGroupConfig(StrictModel):
    """A CPU-only worker group for the ingress, Serve proxies and the CPU stages of batch jobs."""

    name: str = Field("cpu", pattern=DNS_LABEL, description="Worker group name.")
    cpu: int = Field(8, ge=1, description="CPUs of one pod (Ray logical CPUs equal the container's).")
    memory: str = Field("32Gi", pattern=QUANTITY, description="Memory request and limit of one pod.")
    min_pods: int = Field(1, ge=0, description="Fewest pods; keep 1 so the ingress has a home.")
    max_pods: int = Field(4, ge=1, description="Most pods the Ray autoscaler may start.")

    @model_validator(mode="after")
    def _bounds(self) -> CpuGroupConfig:
        if self.min_pods > self.max_pods:
            raise ValueError("min_pods must not exceed max_pods")
        return self


class WorkerGroupConfig(StrictModel):
    """One group of model-serving pods; every enabled size belongs to exactly one group."""

    name: str = Field(pattern=DNS_LABEL, description="Worker group name (a DNS label).")
    sizes: list[ModelSize] = Field(min_length=1, description="Sizes whose replicas run in this group.")
    gpu_product: str | None = Field(
        None, description="GPU node label value; None takes the smallest of `gpu_types` that fits."
    )
    gpus_per_pod: int = Field(1, ge=0, description="GPUs of one pod; 0 for a group of CPU-engine sizes.")
    cpus_per_pod: int | None = Field(
        None, ge=1, description="CPUs of one pod; None derives them from the replicas a pod can hold."
    )
    memory: str = Field("48Gi", pattern=QUANTITY, description="Memory request and limit of one pod.")
    min_pods: int | None = Field(None, ge=0, description="Fewest pods; None packs the sizes' min replicas.")
    max_pods: int | None = Field(None, ge=0, description="Most pods; None packs the sizes' max replicas.")


class ProbeConfig(StrictModel):
    """Readiness and liveness probes of the Ray containers (the same checks KubeRay would inject)."""

    raylet_health_port: int = Field(
        52365, description="Dashboard agent port serving /api/local_raylet_healthz."
    )
    dashboard_port: int = Field(8265, description="Head dashboard port serving /api/gcs_healthz.")
    serve_health_path: str = Field("/-/healthz", description="Serve proxy health path on the serve port.")
    period_seconds: int = Field(5, ge=1, description="Seconds between probes.")
    timeout_seconds: int = Field(2, ge=1, description="Seconds one worker probe request may take.")
    head_timeout_seconds: int = Field(5, ge=1, description="Seconds one head probe may take (two requests).")
    initial_delay_seconds: int = Field(10, ge=0, description="Seconds before the first probe.")
    readiness_failure_threshold: int = Field(10, ge=1, description="Failed readiness probes before unready.")
    serve_readiness_failure_threshold: int = Field(
        1, ge=1, description="Failed readiness probes before a serving worker leaves the Service."
    )
    liveness_failure_threshold: int = Field(120, ge=1, description="Failed liveness probes before a restart.")


class UpgradeConfig(StrictModel):
    """How a RayService change that needs a new cluster is rolled out."""

    strategy: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"] = Field(
        "NewCluster",
        description="`NewCluster`: blue-green, traffic moves once the new cluster is ready (zero downtime, "
        "needs spare capacity); `NewClusterWithIncrementalUpgrade`: gradual shift through the Gateway API; "
        "`None`: no cluster upgrades.",
    )
    gateway_class_name: str | None = Field(None, description="GatewayClass for the incremental upgrade.")
    step_size_percent: int = Field(25, ge=1, le=100, description="Traffic moved per incremental step.")
    interval_seconds: int = Field(60, ge=1, description="Seconds between incremental steps.")
    max_surge_percent: int = Field(
        100, ge=1, le=100, description="Extra capacity the new cluster may add per step."
    )
    cluster_deletion_delay_seconds: int = Field(
        60, ge=0, description="Seconds the old cluster lives after traffic left it (lets requests drain)."
    )

    @model_validator(mode="after")
    def _gateway_for_incremental(self) -> UpgradeConfig:
        if self.strategy == "NewClusterWithIncrementalUpgrade" and not self.gateway_class_name:
            raise ValueError("the incremental upgrade needs gateway_class_name")
        return self


class SecretEnvConfig(StrictModel):
    """An environment variable filled from a Kubernetes Secret key."""

    env: str = Field(pattern=ENV_NAME, description="Environment variable name in the Ray containers.")
    secret: str = Field(pattern=DNS_LABEL, description="Secret name.")
    key: str = Field(description="Key inside the Secret.")
    optional: bool = Field(
        True, description="Start pods without it (public weights, IRSA / workload identity for S3)."
    )


def default_secret_env() -> list[SecretEnvConfig]:
    """Hugging Face token, S3 credentials and API keys, each from its own Secret."""
    return [
        SecretEnvConfig(env="HF_TOKEN", secret="hf-token", key="HF_TOKEN"),
        SecretEnvConfig(env="AWS_ACCESS_KEY_ID", secret="s3-credentials", key="AWS_ACCESS_KEY_ID"),
        SecretEnvConfig(env="AWS_SECRET_ACCESS_KEY", secret="s3-credentials", key="AWS_SECRET_ACCESS_KEY"),
        SecretEnvConfig(env="AWS_ENDPOINT_URL", secret="s3-credentials", key="AWS_ENDPOINT_URL"),
        SecretEnvConfig(env="QWEN_API_KEYS", secret="qwen-api-keys", key="QWEN_API_KEYS"),
    ]


class BatchJobConfig(StrictModel):
    """The nightly batch job (RayJob, RayCronJob, or a plain CronJob that creates the RayJob)."""

    name: str = Field("qwen-nightly-batch", pattern=DNS_LABEL, description="Name of the job resources.")
    input_uri: str = Field("s3://qwen-batch/incoming/", description="`--input` of `qwen-cluster batch`.")
    output_uri: str = Field("s3://qwen-batch/results/", description="`--output` of `qwen-cluster batch`.")
    task: str = Field("extract", description="`--task` of `qwen-cluster batch` (one of its TASK_NAMES).")
    prompt: str | None = Field(
        None, description="`--prompt` of `qwen-cluster batch` (needed by task `custom`)."
    )
    s3_endpoint: str | None = Field(None, description="`--s3-endpoint`; None keeps the config/env endpoint.")
    partial_failure_ok: bool = Field(
        True,
        description="Count exit code 2 (some rows failed, error rows written) as success, so the "
        "RayJob is not retried on a fresh GPU cluster for rows that fail every time.",
    )
    schedule: str = Field("0 2 * * *", description="Cron schedule (five fields).")
    time_zone: str = Field("Etc/UTC", description="IANA time zone of the schedule.")
    scheduler: Literal["raycronjob", "cronjob"] = Field(
        "raycronjob",
        description="What the kustomization schedules with: a RayCronJob (KubeRay >= 1.6, feature gate "
        "RayCronJob) or a plain CronJob that creates the RayJob with kubectl.",
    )
    suspend: bool = Field(False, description="Render the schedule suspended.")
    active_deadline_seconds: int = Field(21_600, ge=1, description="Longest a run may take, start to end.")
    pre_running_deadline_seconds: int = Field(
        1_800, ge=1, description="Longest a run may wait for its cluster (GPUs) before it fails."
    )
    ttl_seconds_after_finished: int = Field(
        600, ge=0, description="Seconds the finished run's cluster is kept for logs before deletion."
    )
    backoff_limit: int = Field(1, ge=0, description="Retries of a failed run, each on a new cluster.")
    submitter_backoff_limit: int = Field(2, ge=0, description="Retries of the submitter pod.")
    kubectl_image: str = Field(
        "registry.k8s.io/kubectl:v1.33.4", description="Image of the plain CronJob's kubectl container."
    )
    starting_deadline_seconds: int = Field(
        3_600, ge=1, description="Plain CronJob: how late a missed run may still start."
    )

    @model_validator(mode="after")
    def _known_task(self) -> BatchJobConfig:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown batch task {self.task!r}; valid: {', '.join(TASK_NAMES)}")
        if self.task == "custom" and not self.prompt:
            raise ValueError("task `custom` needs a prompt")
        return self

    @field_validator("schedule")
    @classmethod
    def _five_fields(cls, schedule: str) -> str:
        return check_cron_schedule(schedule)


class MonitoringConfig(StrictModel):
    """How Prometheus finds the Ray metrics (Serve app metrics are exported by every node)."""

    metrics_port: int = Field(8080, description="Ray metrics export port on every node.")
    prometheus_annotations: bool = Field(True, description="Add prometheus.io/* scrape annotations to pods.")
    pod_monitor: bool = Field(True, description="Render a Prometheus Operator PodMonitor.")
    scrape_interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m)$", description="Scrape interval.")


class OverlayConfig(StrictModel):
    """An environment beside `default`: the config rendered with these changes into its own folder."""

    namespace: str = Field(pattern=DNS_LABEL, description="Namespace of the overlay's resources.")
    sizes: list[ModelSize] | None = Field(
        None, description="Serve only these sizes; None keeps the config's."
    )
    max_replicas_per_size: int | None = Field(None, ge=1, description="Cap every size's replicas.")
    worker_groups: list[WorkerGroupConfig] | None = Field(
        None, description="Worker groups of the overlay; None derives them."
    )
    suspend_batch: bool | None = Field(
        None, description="Suspend the nightly schedule; None keeps the base's."
    )


def default_overlays() -> dict[str, OverlayConfig]:
    """`dev`: 0.8B and 2B on one small GPU; `prod`: the config as it is."""
    return {
        "dev": OverlayConfig(
            namespace="qwen-dev",
            sizes=["0.8b", "2b"],
            max_replicas_per_size=1,
            suspend_batch=True,
        ),
        "prod": OverlayConfig(namespace="qwen"),
    }


class KubernetesConfig(StrictModel):
    """What the KubeRay manifests are rendered with."""

    namespace: str = Field("qwen", pattern=DNS_LABEL, description="Namespace the resources are created in.")
    name: str = Field("qwen", pattern=DNS_LABEL, description="Name of the RayService.")
    image: str = Field(
        "ghcr.io/your-org/qwen-cluster:0.1.0-py311-gpu",
        description="Project image (infra/image/Dockerfile) for every Ray container.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of the Ray containers."
    )
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets for a private registry.")
    service_account_name: str | None = Field(None, description="Service account of the Ray pods.")
    ray_version: str = Field("2.60.0", description="Ray version inside the image (`rayVersion`).")
    kuberay_version: str = Field("1.7.0", description="KubeRay operator version the manifests target.")
    cache_mount_path: str = Field("/home/ray/.cache", description="Where the cache volume is mounted.")
    cache_dir: str = Field(
        "/home/ray/.cache/qwen-cluster",
        description="`cache_dir` of the cluster config inside the containers.",
    )
    hf_home: str = Field("/home/ray/.cache/huggingface", description="HF_HOME inside the containers.")
    cache_volume_claim: str | None = Field(
        None, description="PersistentVolumeClaim (ReadWriteMany) for /home/ray/.cache; None is an emptyDir."
    )
    cache_size_limit: str = Field("200Gi", pattern=QUANTITY, description="Size limit of the cache emptyDir.")
    config_map_name: str = Field(
        "qwen-cluster-config", pattern=DNS_LABEL, description="ConfigMap holding the cluster config for jobs."
    )
    config_mount_path: str = Field("/home/ray/qwen-config", description="Where jobs see the config file.")
    head: HeadConfig = Field(default_factory=HeadConfig, description="The head pod.")
    cpu_group: CpuGroupConfig = Field(default_factory=CpuGroupConfig, description="The CPU worker group.")
    worker_groups: list[WorkerGroupConfig] | None = Field(
        None,
        description="Model worker groups; None derives them: sizes with fractional GPUs share one group, "
        "every whole-GPU size gets its own, CPU-engine sizes share one.",
    )
    gpu_types: list[GpuType] = Field(default_factory=default_gpu_types, description="GPUs nodes offer.")
    gpu_node_label: str = Field("nvidia.com/gpu.product", description="Node label naming the GPU model.")
    gpu_tolerations: bool = Field(True, description="Tolerate the `nvidia.com/gpu` NoSchedule taint.")
    gpu_cpu_headroom: int = Field(
        1, ge=0, description="CPUs per GPU pod beyond its replicas' (Serve proxy, a stray ingress replica)."
    )
    autoscaler_idle_timeout_seconds: int = Field(300, ge=0, description="Idle seconds before a worker goes.")
    autoscaler_upscaling_mode: Literal["Default", "Aggressive", "Conservative"] = Field(
        "Default", description="Ray autoscaler upscaling speed."
    )
    exclude_head_from_serve_service: bool = Field(
        True, description="Send traffic to worker proxies only (the head has no CPUs for replicas)."
    )
    probes: ProbeConfig = Field(default_factory=ProbeConfig, description="Container probes.")
    upgrade: UpgradeConfig = Field(default_factory=UpgradeConfig, description="RayService upgrades.")
    secret_env: list[SecretEnvConfig] = Field(
        default_factory=default_secret_env, description="Environment variables from Secrets."
    )
    extra_env: dict[str, str] = Field(default_factory=dict, description="Plain environment variables.")
    batch: BatchJobConfig = Field(default_factory=BatchJobConfig, description="The nightly batch job.")
    retrain: RetrainJobConfig = Field(
        default_factory=RetrainJobConfig, description="The nightly router retrain from shadow labels."
    )
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Prometheus scraping.")
    overlays: dict[str, OverlayConfig] = Field(
        default_factory=default_overlays,
        description="Environments by name, each rendered to a self-contained folder beside `default`.",
    )

    @model_validator(mode="after")
    def _caches_on_the_volume(self) -> KubernetesConfig:
        root = self.cache_mount_path.rstrip("/") + "/"
        outside = [path for path in (self.cache_dir, self.hf_home) if not path.startswith(root)]
        if outside:
            raise ValueError(f"{', '.join(outside)} must lie under cache_mount_path {self.cache_mount_path}")
        return self

    @field_validator("overlays")
    @classmethod
    def _overlay_names(cls, overlays: dict[str, OverlayConfig]) -> dict[str, OverlayConfig]:
        bad = [name for name in overlays if not re.match(DNS_LABEL, name) or name == "default"]
        if bad:
            raise ValueError(f"overlay names must be DNS labels other than `default`: {', '.join(bad)}")
        return overlays

    @field_validator("extra_env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [name for name in env if not re.match(ENV_NAME, name)]
        if bad:
            raise ValueError(f"not environment variable names: {', '.join(bad)}")
        return env
