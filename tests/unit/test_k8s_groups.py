"""Worker-group planning: which sizes share a GPU, which GPU, how many pods, and what is refused."""

from __future__ import annotations

import pytest

from cluster.config import ClusterConfig, load_config
from cluster.k8s.groups import (
    K8sRenderError,
    apply_overlay,
    plan_worker_groups,
    pods_needed,
    worst_case_per_gpu,
)
from cluster.kubernetes_config import OverlayConfig

pytestmark = pytest.mark.unit


def gpu_config(**changes) -> ClusterConfig:
    data = load_config(profile="gpu").model_dump()
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return ClusterConfig.model_validate(data)


def test_gpu_profile_groups_share_small_sizes_and_isolate_large_ones() -> None:
    plans = {plan.name: plan for plan in plan_worker_groups(load_config(profile="gpu"))}
    assert list(plans) == ["gpu-0-8b-2b", "gpu-4b", "gpu-9b", "cpu"]
    small, four, nine = plans["gpu-0-8b-2b"], plans["gpu-4b"], plans["gpu-9b"]
    assert small.sizes == ("0.8b", "2b") and four.sizes == ("4b",) and nine.sizes == ("9b",)
    # 0.8B + 2B (or two 2B) need 20 GiB on one GPU: an L4; the 9B needs 40 GiB: an L40S.
    assert (small.gpu_product, four.gpu_product, nine.gpu_product) == (
        "NVIDIA-L4",
        "NVIDIA-L4",
        "NVIDIA-L40S",
    )
    # max replicas 4 + 4 at half a GPU each -> 4 one-GPU pods; min 1 + 1 -> one pod.
    assert (small.min_pods, small.initial_pods, small.max_pods) == (1, 1, 4)
    # min 0, initial 1, max 2 whole-GPU replicas.
    assert (four.min_pods, four.initial_pods, four.max_pods) == (0, 1, 2)
    # two replicas of 2 CPUs per GPU, plus one CPU of headroom.
    assert small.cpus_per_pod == 5 and four.cpus_per_pod == 5
    assert small.ray_resources() == {"CPU": "5", "GPU": "1", "qwen_gpu_0_8b_2b": "1"}
    assert plans["cpu"].placement_resource is None and plans["cpu"].gpus_per_pod == 0


def test_dev_overlay_is_one_small_gpu_with_two_sizes() -> None:
    base = load_config(profile="gpu")
    dev = apply_overlay(base, base.kubernetes.overlays["dev"])
    assert [m.size for m in dev.enabled_models()] == ["0.8b", "2b"]
    plans = plan_worker_groups(dev)
    assert [p.name for p in plans] == ["gpu-0-8b-2b", "cpu"]
    assert (plans[0].min_pods, plans[0].max_pods, plans[0].gpus_per_pod, plans[0].gpu_product) == (
        1,
        1,
        1,
        "NVIDIA-L4",
    )
    assert dev.kubernetes.batch.suspend is True
    assert (base.kubernetes.namespace, dev.kubernetes.namespace) == ("qwen", "qwen-dev")


def test_packing_counts_gpus_and_cpus() -> None:
    models = {m.size: m for m in load_config(profile="gpu").models}
    small, big = models["0.8b"], models["9b"]
    assert pods_needed([small] * 3, gpus_per_pod=1, cpus_per_pod=5) == 2
    assert pods_needed([small] * 3, gpus_per_pod=1, cpus_per_pod=2) == 3
    assert pods_needed([big, big, small], gpus_per_pod=2, cpus_per_pod=20) == 2
    assert pods_needed([], gpus_per_pod=1, cpus_per_pod=1) == 0
    assert worst_case_per_gpu([small, models["2b"]], lambda m: 1.0) == 2.0


def test_refuses_vllm_replicas_that_overbook_a_shared_gpu() -> None:
    config = gpu_config(**{"models.0.engine.engine_kwargs": {"gpu_memory_utilization": 0.6}})
    with pytest.raises(K8sRenderError, match=r"gpu-0-8b-2b: vLLM replicas sharing a GPU claim 1.20"):
        plan_worker_groups(config)


def test_refuses_a_gpu_too_small_and_an_unplaced_size() -> None:
    data = load_config(profile="gpu").model_dump()
    data["kubernetes"]["worker_groups"] = [
        {"name": "small", "sizes": ["0.8b", "2b"]},
        {"name": "big", "sizes": ["9b"], "gpu_product": "NVIDIA-L4"},
    ]
    with pytest.raises(K8sRenderError) as error:
        plan_worker_groups(ClusterConfig.model_validate(data))
    message = str(error.value)
    assert "replicas sharing one NVIDIA-L4 need 40 GiB; it has 22 GiB" in message
    assert "size 4b is in no worker group" in message


def test_refuses_max_pods_that_cannot_hold_max_replicas() -> None:
    data = load_config(profile="gpu").model_dump()
    data["kubernetes"]["worker_groups"] = [
        {"name": "small", "sizes": ["0.8b", "2b"], "max_pods": 2},
        {"name": "four", "sizes": ["4b"]},
        {"name": "nine", "sizes": ["9b"]},
    ]
    with pytest.raises(K8sRenderError, match=r"max_pods 2 cannot hold the sizes' max replicas \(4 pods\)"):
        plan_worker_groups(ClusterConfig.model_validate(data))


def test_overlay_cannot_drop_the_fallback_size() -> None:
    base = load_config(profile="gpu")
    with pytest.raises(K8sRenderError, match="router.fallback_size 0.8b is not an enabled size"):
        plan_worker_groups(apply_overlay(base, OverlayConfig(namespace="x", sizes=["4b", "9b"])))


def test_cpu_profile_renders_a_cpu_model_group() -> None:
    plans = plan_worker_groups(load_config(profile="cpu"))
    assert (
        plans[0].name == "cpu-models-0-8b-2b" and plans[0].gpus_per_pod == 0 and plans[0].gpu_product is None
    )
    assert plans[0].ray_resources()["qwen_cpu_models_0_8b_2b"] == str(plans[0].cpus_per_pod)
