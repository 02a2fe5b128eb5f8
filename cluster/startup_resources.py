"""What an application asks of Ray when it deploys, checked against a local cluster before it starts.

A local Ray has no autoscaler: a replica that asks for more CPUs or GPUs than the node has left
stays PENDING for good, and `qwen-cluster up` would wait its whole `--timeout` (15 minutes by default)
before saying so. The `cpu` profile on a 2-core host is such a case (two sizes at one CPU each and
the ingress at half a CPU), as is the `gpu` profile on a host without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cluster.config import INGRESS_DEPLOYMENT_NAME, ClusterConfig, DeploymentConfig


@dataclass(frozen=True)
class Demand:
    """Logical resources one deployment holds at deploy time (all its starting replicas)."""

    replicas: int
    cpus: float
    gpus: float


class InsufficientResourcesError(RuntimeError):
    """The application's starting replicas ask for more than the local Ray node has."""


def starting_replicas(deployment: DeploymentConfig) -> int:
    """Replicas Serve starts a deployment with: `num_replicas`, else the autoscaler's
    `initial_replicas`, else its `min_replicas`."""
    scaling = deployment.autoscaling_config
    if scaling is not None and scaling.initial_replicas is not None:
        return scaling.initial_replicas
    return deployment.min_replicas


def startup_demand(config: ClusterConfig) -> dict[str, Demand]:
    """Deployment name -> what its starting replicas reserve, as `deployments.app` builds the app:
    one deployment per enabled size and the ingress, or the one colocated deployment."""
    demand: dict[str, Demand] = {}
    for name, (model, _) in config.serve_deployments().items():
        replicas = starting_replicas(model.deployment)
        demand[name] = Demand(
            replicas, replicas * model.deployment.num_cpus, replicas * model.deployment.num_gpus
        )
    if config.colocated_model() is None:
        ingress = config.serving.ingress
        demand[INGRESS_DEPLOYMENT_NAME] = Demand(
            ingress.num_replicas, ingress.num_replicas * ingress.num_cpus, 0.0
        )
    return demand


def check_fits(config: ClusterConfig, available: Mapping[str, float]) -> None:
    """Refuse, before anything deploys, an application whose starting replicas need more CPUs or
    GPUs than `available` (`ray.cluster_resources()` of a local cluster) holds.

    Raises:
        InsufficientResourcesError: with each deployment's share and the settings that change it.
    """
    demand = startup_demand(config)
    short = []
    for resource, key in (("CPU", "cpus"), ("GPU", "gpus")):
        needed = sum(getattr(d, key) for d in demand.values())
        have = float(available.get(resource, 0.0))
        if needed > have + 1e-9:
            parts = ", ".join(
                f"{name} {d.replicas} x {getattr(d, key) / d.replicas:g}"
                for name, d in demand.items()
                if getattr(d, key) > 0
            )
            short.append(f"{needed:g} {resource}s ({parts}) but this local Ray has {have:g}")
    if short:
        raise InsufficientResourcesError(
            "the application's starting replicas need "
            + "; and ".join(short)
            + ": their replicas would wait for good. Lower models[].deployment.num_cpus / num_gpus or "
            "serve fewer sizes (models[].enabled), or give the local Ray more logical CPUs with "
            "ray.num_cpus (the demo profile sets 8 on any host)"
        )
