"""The cluster config as the containers see it, and the RayService `serveConfigV2` built from it.

The Serve app gets the sections of the config it reads inline as builder args (`{"config": ...}`),
validated by `deployments.app_args.parse_app_args`; the others (batch, ray, kubernetes) take their
defaults there, so changing them does not redeploy the app. Per-size deployment options are also
written as Serve config overrides: that is where each size is pinned to its worker group (a custom
resource in `ray_actor_options`), and editing autoscaling there is a light in-place update on a live
cluster. The ingress's override carries only its `user_config` (the run-time shadow settings):
editing it in the RayService reaches the running replicas' `reconfigure`, without a restart. A config
of one size colocated with the ingress (`ClusterConfig.colocated_model`) has one override, the
ingress's, with both the size's options and that `user_config`.
"""

from __future__ import annotations

from typing import Any

from cluster.config import INGRESS_DEPLOYMENT_NAME, ClusterConfig
from cluster.k8s.groups import GroupPlan
from cluster.k8s.yamlio import dump_yaml
from cluster.shadow_config import RUNTIME_FIELDS, ingress_user_config

APP_IMPORT_PATH = "deployments.app:build_app"
# What `deployments.app:build_app` and the ingress read of the cluster config.
SERVE_APP_SECTIONS = ("profile", "cache_dir", "models", "serving", "router", "object_store")


def container_cluster_config(config: ClusterConfig) -> dict[str, Any]:
    """The config as a JSON-able dict for the containers.

    `cache_dir` is the fixed in-container path (not this machine's $HOME) and the `kubernetes` section
    is left out: the app does not read it, and a change to pods or schedules must not redeploy the app.
    """
    data = config.model_dump(mode="json", exclude={"kubernetes"})
    data["cache_dir"] = config.kubernetes.cache_dir
    return data


def serve_app_config(config: ClusterConfig) -> dict[str, Any]:
    """The config sections the Serve app reads, for its builder args.

    `router.shadow` keeps only the fields fixed at replica start: its run-time fields live in the
    ingress's `user_config` alone (`ingress_override`). In the args too, a change of the sample
    rate would change the app's code version, and Serve would rebuild the app and restart every
    replica, model servers included, instead of reconfiguring the ingress in place.
    """
    data = container_cluster_config(config)
    shadow = data["router"]["shadow"]
    data["router"]["shadow"] = {key: value for key, value in shadow.items() if key not in RUNTIME_FIELDS}
    return {key: data[key] for key in SERVE_APP_SECTIONS}


def deployment_overrides(config: ClusterConfig, plans: list[GroupPlan]) -> list[dict[str, Any]]:
    """Serve config `deployments` entries, one per deployment that runs an engine (one per enabled
    size, or the one colocated with the ingress, which also carries the ingress's `user_config`).

    `ray_actor_options` in a Serve config replaces the one in code as a whole, so it repeats num_cpus,
    num_gpus and accelerator_type from the config and adds the group's placement resource.
    """
    overrides = []
    for name, (model, options) in config.serve_deployments().items():
        # plan_worker_groups has placed every enabled size in exactly one group.
        group = next(plan for plan in plans if model.size in plan.sizes)
        actor = dict(options["ray_actor_options"])
        actor["resources"] = {group.placement_resource: group.placement_amount(model)}
        entry: dict[str, Any] = {"name": name}
        if "autoscaling_config" in options:
            entry["autoscaling_config"] = options["autoscaling_config"]
        else:
            entry["num_replicas"] = options["num_replicas"]
        entry["max_ongoing_requests"] = options["max_ongoing_requests"]
        entry["max_queued_requests"] = options["max_queued_requests"]
        entry["ray_actor_options"] = actor
        if name == INGRESS_DEPLOYMENT_NAME:
            entry["user_config"] = ingress_user_config(config.router.shadow)
        overrides.append(entry)
    return overrides


def ingress_override(config: ClusterConfig) -> dict[str, Any]:
    """The ingress's Serve config `deployments` entry: its name and `user_config` only.

    The same `user_config` the local app builder sets in code (`ingress_user_config`), and the only
    place of the run-time shadow fields (the args leave them out). Serve applies a change of an
    override's `user_config` in place: with the app's args, import path and runtime env unchanged
    the app is not rebuilt, and each ingress replica gets `reconfigure` without a restart, so
    `kubectl edit` of this one field, or a re-render after changing them in the config, switches
    shadow answers on a running RayService. Every other option keeps the builder's value.
    """
    return {"name": INGRESS_DEPLOYMENT_NAME, "user_config": ingress_user_config(config.router.shadow)}


def serve_config(config: ClusterConfig, plans: list[GroupPlan]) -> dict[str, Any]:
    """The Serve config (ServeDeploySchema) the RayService deploys."""
    serving = config.serving
    deployments = deployment_overrides(config, plans)
    if config.colocated_model() is None:
        deployments.append(ingress_override(config))
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": serving.port},
        "applications": [
            {
                "name": serving.app_name,
                "route_prefix": serving.route_prefix,
                "import_path": APP_IMPORT_PATH,
                "args": {"config": serve_app_config(config)},
                "deployments": deployments,
            }
        ],
    }


def serve_config_text(config: ClusterConfig, plans: list[GroupPlan]) -> str:
    """`serveConfigV2`: the Serve config as a YAML string."""
    return dump_yaml(serve_config(config, plans))
