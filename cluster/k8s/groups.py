"""Plan the Ray worker groups: which sizes run where, on which GPU, with how many pods.

Each model size is pinned to its group by a custom Ray resource that only that group's pods offer
(the Serve deployment asks for it in `ray_actor_options.resources`), so a 9B replica never lands on a
small GPU and the autoscaler scales the right group. Pod counts come from packing the sizes' min,
initial and max replicas onto GPUs, so the group bounds always cover what Serve may ask for.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from cluster.catalog import CATALOG, SIZES
from cluster.config import ClusterConfig, ModelConfig
from cluster.kubernetes_config import KubernetesConfig, OverlayConfig, WorkerGroupConfig

EPSILON = 1e-9
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


class K8sRenderError(ValueError):
    """The config cannot be rendered to manifests that would work; the message lists every reason."""


@dataclass(frozen=True)
class GroupPlan:
    """One worker group as rendered.

    Attributes:
        name: worker group name.
        sizes: sizes whose replicas are pinned here (empty for the CPU group).
        gpus_per_pod: GPUs of one pod (0 for CPU-only groups).
        cpus_per_pod: Ray logical CPUs of one pod (equal to the container's CPU request).
        memory: memory request and limit of one pod.
        min_pods: fewest pods.
        initial_pods: pods at creation.
        max_pods: most pods.
        gpu_product: GPU node label value, None for CPU groups.
        placement_resource: custom Ray resource pinning the sizes' replicas here (None for the CPU group).
        accelerator_type: Ray accelerator type the sizes ask for, offered by the group so the autoscaler
            can scale it from zero.
    """

    name: str
    sizes: tuple[str, ...]
    gpus_per_pod: int
    cpus_per_pod: int
    memory: str
    min_pods: int
    initial_pods: int
    max_pods: int
    gpu_product: str | None = None
    placement_resource: str | None = None
    accelerator_type: str | None = None

    def placement_amount(self, model: ModelConfig) -> float:
        """How much of `placement_resource` one replica of `model` asks for (its GPU or CPU share)."""
        return model.deployment.num_gpus if self.gpus_per_pod else model.deployment.num_cpus

    def ray_resources(self) -> dict[str, str]:
        """The group's `resources` field: Ray logical resources of one pod, as strings."""
        resources = {"CPU": str(self.cpus_per_pod)}
        if self.gpus_per_pod:
            resources["GPU"] = str(self.gpus_per_pod)
        if self.placement_resource:
            amount = self.gpus_per_pod or self.cpus_per_pod
            resources[self.placement_resource] = str(amount)
        if self.accelerator_type:
            resources[f"accelerator_type:{self.accelerator_type}"] = "1"
        return resources


def replica_bounds(model: ModelConfig) -> tuple[int, int, int]:
    """(min, initial, max) replicas Serve may run for `model`."""
    deployment = model.deployment
    if deployment.autoscaling_config is not None:
        scaling = deployment.autoscaling_config
        initial = scaling.initial_replicas if scaling.initial_replicas is not None else scaling.min_replicas
        return scaling.min_replicas, initial, scaling.max_replicas
    count = 1 if deployment.num_replicas is None else deployment.num_replicas
    return count, count, count


def engine_gpu_memory_claim(model: ModelConfig) -> float:
    """Fraction of a GPU's memory the size's engine claims wherever it runs on one (vLLM's
    gpu_memory_utilization; 0 for other engines)."""
    if model.engine.kind != "vllm":
        return 0.0
    return float(
        model.engine.engine_kwargs.get("gpu_memory_utilization", VLLM_DEFAULT_GPU_MEMORY_UTILIZATION)
    )


def gpu_memory_utilization(model: ModelConfig) -> float:
    """Fraction of a GPU's memory a serving replica of the size claims (0 when it has no GPU)."""
    return engine_gpu_memory_claim(model) if model.deployment.num_gpus > 0 else 0.0


def worst_case_per_gpu(models: list[ModelConfig], weight) -> float:
    """Largest total `weight(model)` that replicas sharing one GPU can reach (fractions summing to <= 1)."""
    shares = [(min(m.deployment.num_gpus, 1.0), weight(m)) for m in models if m.deployment.num_gpus > 0]
    limits = [int(1 / share + EPSILON) for share, _ in shares]
    best = 0.0
    for counts in itertools.product(*(range(limit + 1) for limit in limits)):
        if sum(c * share for c, (share, _) in zip(counts, shares, strict=True)) <= 1 + EPSILON:
            best = max(best, sum(c * w for c, (_, w) in zip(counts, shares, strict=True)))
    return best


def _memory_per_gpu(model: ModelConfig) -> float:
    return CATALOG[model.size].accelerator_memory_gib / max(model.deployment.num_gpus, 1.0)


def pods_needed(replicas: list[ModelConfig], gpus_per_pod: int, cpus_per_pod: int) -> int:
    """Pods that hold `replicas` (one entry per replica): first-fit-decreasing on GPUs, then on CPUs."""
    if not replicas:
        return 0
    by_cpu = math.ceil(sum(m.deployment.num_cpus for m in replicas) / cpus_per_pod - EPSILON)
    if not gpus_per_pod:
        return by_cpu
    whole = sum(m.deployment.num_gpus for m in replicas if m.deployment.num_gpus >= 1)
    free: list[float] = []
    for share in sorted((m.deployment.num_gpus for m in replicas if m.deployment.num_gpus < 1), reverse=True):
        slot = next((i for i, room in enumerate(free) if room + EPSILON >= share), None)
        if slot is None:
            free.append(1.0 - share)
        else:
            free[slot] -= share
    by_gpu = math.ceil((whole + len(free)) / gpus_per_pod - EPSILON)
    return max(by_gpu, by_cpu)


def derived_worker_groups(models: list[ModelConfig]) -> list[WorkerGroupConfig]:
    """Fractional-GPU sizes share a group, each whole-GPU size has its own, CPU-engine sizes share one."""
    fractional = [m.size for m in models if 0 < m.deployment.num_gpus < 1]
    whole = [m.size for m in models if m.deployment.num_gpus >= 1]
    cpu_only = [m.size for m in models if m.deployment.num_gpus == 0]
    groups = []
    if fractional:
        groups.append(WorkerGroupConfig(name=_group_name("gpu", fractional), sizes=fractional))
    for size in whole:
        gpus = math.ceil(next(m.deployment.num_gpus for m in models if m.size == size))
        groups.append(WorkerGroupConfig(name=_group_name("gpu", [size]), sizes=[size], gpus_per_pod=gpus))
    if cpu_only:
        groups.append(
            WorkerGroupConfig(name=_group_name("cpu-models", cpu_only), sizes=cpu_only, gpus_per_pod=0)
        )
    return groups


def _group_name(prefix: str, sizes: list[str]) -> str:
    return "-".join([prefix, *(s.replace(".", "-") for s in sizes)])


def plan_worker_groups(config: ClusterConfig) -> list[GroupPlan]:
    """The model worker groups followed by the CPU group.

    Raises:
        K8sRenderError: listing every size that is unplaced, placed twice, or does not fit its group.
    """
    k8s = config.kubernetes
    models = config.enabled_models()
    by_size = {m.size: m for m in models}
    wanted = k8s.worker_groups if k8s.worker_groups is not None else derived_worker_groups(models)
    problems: list[str] = []
    placed: dict[str, str] = {}
    plans: list[GroupPlan] = []
    for group in wanted:
        members = [by_size[s] for s in group.sizes if s in by_size]
        for model in members:
            if model.size in placed:
                problems.append(
                    f"size {model.size} is in worker groups {placed[model.size]} and {group.name}"
                )
            placed[model.size] = group.name
        if members:
            plans.append(_plan_group(group, members, k8s, problems))
    problems += [f"size {m.size} is in no worker group" for m in models if m.size not in placed]
    problems += _check_defaults_served(config)
    ingress_cpus = config.serving.ingress.num_cpus
    if ingress_cpus > k8s.cpu_group.cpu:
        problems.append(
            f"ingress num_cpus {ingress_cpus} exceeds the CPU group's {k8s.cpu_group.cpu} CPUs per pod"
        )
    if problems:
        raise K8sRenderError("cannot render Kubernetes manifests:\n" + "\n".join(f"  {p}" for p in problems))
    cpu = k8s.cpu_group
    plans.append(
        GroupPlan(
            name=cpu.name,
            sizes=(),
            gpus_per_pod=0,
            cpus_per_pod=cpu.cpu,
            memory=cpu.memory,
            min_pods=cpu.min_pods,
            initial_pods=cpu.min_pods,
            max_pods=cpu.max_pods,
        )
    )
    return plans


def _plan_group(
    group: WorkerGroupConfig, members: list[ModelConfig], k8s: KubernetesConfig, problems: list[str]
) -> GroupPlan:
    where = f"worker group {group.name}"
    gpu_members = [m for m in members if m.deployment.num_gpus > 0]
    if gpu_members and len(gpu_members) != len(members):
        problems.append(f"{where} mixes GPU and CPU-only sizes")
    if bool(gpu_members) != bool(group.gpus_per_pod):
        problems.append(f"{where}: gpus_per_pod {group.gpus_per_pod} does not suit sizes {list(group.sizes)}")
    for model in gpu_members:
        gpus = model.deployment.num_gpus
        if gpus > group.gpus_per_pod or (gpus > 1 and gpus != int(gpus)):
            problems.append(f"{where}: size {model.size} asks {gpus} GPUs; a pod has {group.gpus_per_pod}")
    gpu_product = None
    if gpu_members:
        gpu_product = _choose_gpu(group, gpu_members, k8s, problems)
        claimed = worst_case_per_gpu(gpu_members, gpu_memory_utilization)
        if claimed > 1 + EPSILON:
            problems.append(f"{where}: vLLM replicas sharing a GPU claim {claimed:.2f} of its memory (> 1)")
    if group.cpus_per_pod is not None:
        cpus = group.cpus_per_pod
    elif gpu_members:
        ratio = max(m.deployment.num_cpus / m.deployment.num_gpus for m in gpu_members)
        cpus = math.ceil(ratio * group.gpus_per_pod - EPSILON) + k8s.gpu_cpu_headroom
    else:
        cpus = math.ceil(max(m.deployment.num_cpus for m in members) - EPSILON) + k8s.gpu_cpu_headroom
    cpus = max(cpus, 1)
    for model in members:
        if model.deployment.num_cpus > cpus:
            problems.append(
                f"{where}: size {model.size} asks {model.deployment.num_cpus} CPUs; a pod has {cpus}"
            )
    gpus_per_pod = group.gpus_per_pod if gpu_members else 0
    accelerators = {m.deployment.accelerator_type for m in members}
    if len(accelerators) > 1:
        problems.append(
            f"{where}: sizes ask for different accelerator types {sorted(map(str, accelerators))}"
        )
    accelerator = next(iter(accelerators)) if len(accelerators) == 1 else None

    def packed(index: int) -> int:
        replicas = [m for m in members for _ in range(replica_bounds(m)[index])]
        return pods_needed(replicas, gpus_per_pod, cpus)

    min_pods = packed(0) if group.min_pods is None else group.min_pods
    max_pods = packed(2) if group.max_pods is None else group.max_pods
    max_pods = max(max_pods, 1)
    if packed(2) > max_pods:
        problems.append(
            f"{where}: max_pods {max_pods} cannot hold the sizes' max replicas ({packed(2)} pods)"
        )
    if min_pods > max_pods:
        problems.append(f"{where}: min_pods {min_pods} exceeds max_pods {max_pods}")
    return GroupPlan(
        name=group.name,
        sizes=tuple(sorted((m.size for m in members), key=SIZES.index)),
        gpus_per_pod=gpus_per_pod,
        cpus_per_pod=cpus,
        memory=group.memory,
        min_pods=min_pods,
        initial_pods=min(max(packed(1), min_pods), max_pods),
        max_pods=max_pods,
        gpu_product=gpu_product,
        placement_resource="qwen_" + group.name.replace("-", "_"),
        accelerator_type=accelerator,
    )


def _choose_gpu(
    group: WorkerGroupConfig, members: list[ModelConfig], k8s: KubernetesConfig, problems: list[str]
) -> str | None:
    """The GPU product for a group: the one it names, else the first in `gpu_types` with room enough."""
    need = worst_case_per_gpu(members, _memory_per_gpu)
    known = {gpu.product: gpu.memory_gib for gpu in k8s.gpu_types}
    if group.gpu_product is not None:
        if group.gpu_product not in known:
            problems.append(
                f"worker group {group.name}: GPU {group.gpu_product} is not in kubernetes.gpu_types"
            )
            return group.gpu_product
        if known[group.gpu_product] + EPSILON < need:
            problems.append(
                f"worker group {group.name}: replicas sharing one {group.gpu_product} need {need:g} GiB; "
                f"it has {known[group.gpu_product]:g} GiB"
            )
        return group.gpu_product
    fitting = [gpu for gpu in k8s.gpu_types if gpu.memory_gib + EPSILON >= need]
    if not fitting:
        problems.append(f"worker group {group.name}: no GPU in kubernetes.gpu_types has {need:g} GiB")
        return None
    return fitting[0].product


def _check_defaults_served(config: ClusterConfig) -> list[str]:
    served = {m.size for m in config.enabled_models()}
    defaults = {
        "router.fallback_size": config.router.fallback_size,
        "batch.default_size": config.batch.default_size,
    }
    return [
        f"{label} {size} is not an enabled size" for label, size in defaults.items() if size not in served
    ]


def apply_overlay(config: ClusterConfig, overlay: OverlayConfig) -> ClusterConfig:
    """The config an environment renders: its namespace, sizes limited, replicas capped, groups and
    schedule replaced."""
    data = config.model_dump()
    data["kubernetes"]["namespace"] = overlay.namespace
    for model in data["models"]:
        if overlay.sizes is not None and model["size"] not in overlay.sizes:
            model["enabled"] = False
        cap = overlay.max_replicas_per_size
        deployment = model["deployment"]
        if cap is not None and deployment["autoscaling_config"] is not None:
            scaling = deployment["autoscaling_config"]
            for key in ("min_replicas", "max_replicas", "initial_replicas"):
                if scaling[key] is not None:
                    scaling[key] = min(scaling[key], cap)
        elif cap is not None and deployment["num_replicas"] is not None:
            deployment["num_replicas"] = min(deployment["num_replicas"], cap)
    if overlay.worker_groups is not None:
        data["kubernetes"]["worker_groups"] = [g.model_dump() for g in overlay.worker_groups]
    if overlay.suspend_batch is not None:
        data["kubernetes"]["batch"]["suspend"] = overlay.suspend_batch
    return ClusterConfig.model_validate(data)
