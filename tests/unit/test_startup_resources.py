"""What an application's starting replicas ask of a local Ray, refused before deploying when it cannot fit."""

from __future__ import annotations

import pytest

from cluster.config import load_config, parse_config
from cluster.startup_resources import InsufficientResourcesError, check_fits, startup_demand

pytestmark = pytest.mark.unit


def test_demand_per_deployment_of_the_shipped_profiles():
    demo = startup_demand(load_config(profile="demo"))
    assert {name: (d.replicas, d.cpus, d.gpus) for name, d in demo.items()} == {
        "model-0_8b": (1, 1.0, 0.0),
        "model-2b": (1, 1.0, 0.0),
        "model-4b": (1, 1.0, 0.0),
        "model-9b": (1, 1.0, 0.0),
        "openai-ingress": (1, 0.5, 0.0),
    }
    gpu = startup_demand(load_config(profile="gpu"))
    assert sum(d.gpus for d in gpu.values()) > 0 and gpu["openai-ingress"].gpus == 0


def one_size(deployment: dict, colocate: bool) -> dict:
    data = load_config(profile="demo").model_dump(mode="json")
    data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
    data["models"][0]["deployment"] = deployment
    data["router"] = {"enabled": False}
    data["serving"]["default_model"] = "qwen3.5-0.8b"
    data["serving"]["ingress"]["colocate_single_size"] = colocate
    return data


def test_starting_replicas_follow_num_replicas_then_initial_then_min():
    colocated = startup_demand(parse_config(one_size({"num_replicas": 2, "num_cpus": 1.5}, colocate=True)))
    assert {name: (d.replicas, d.cpus) for name, d in colocated.items()} == {"openai-ingress": (2, 3.0)}

    scaling = {"min_replicas": 0, "max_replicas": 4, "initial_replicas": 3}
    apart = startup_demand(
        parse_config(one_size({"autoscaling_config": scaling, "num_cpus": 1}, colocate=False))
    )
    assert apart["model-0_8b"].replicas == 3 and apart["openai-ingress"].cpus == 0.5

    scaling.pop("initial_replicas")  # a size that may scale to zero starts with none
    to_zero = startup_demand(
        parse_config(one_size({"autoscaling_config": scaling, "num_cpus": 1}, colocate=False))
    )
    assert to_zero["model-0_8b"].replicas == 0 and to_zero["model-0_8b"].cpus == 0


def test_an_application_that_cannot_fit_a_local_ray_is_refused_naming_the_shares():
    cpu = load_config(profile="cpu")  # two sizes at 1 CPU and the ingress at 0.5 on a 2-core host
    with pytest.raises(InsufficientResourcesError) as info:
        check_fits(cpu, {"CPU": 2.0})
    message = str(info.value)
    assert "need 2.5 CPUs (model-0_8b 1 x 1, model-2b 1 x 1, openai-ingress 1 x 0.5)" in message
    assert "this local Ray has 2" in message and "ray.num_cpus" in message
    check_fits(cpu, {"CPU": 2.5})

    gpu = load_config(profile="gpu")
    with pytest.raises(InsufficientResourcesError, match=r"GPUs \(.*\) but this local Ray has 0"):
        check_fits(gpu, {"CPU": 64.0})
