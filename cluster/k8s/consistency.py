"""Cross-checks between manifests that no schema can make.

For the RayService: the Serve config parses (Ray's own ServeDeploySchema, the app's ClusterConfig),
every enabled size has a deployment override that matches the config, the ingress's override holds
a `user_config` its `reconfigure` accepts, every deployment fits some worker group, and each group's
max pods offer what its pinned deployments may ask at max replicas.
For the batch job: one job spec everywhere, the `qwen-cluster batch` command is complete and dateless,
and its `--config` file is a mounted ConfigMap holding a valid config.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from decimal import Decimal
from typing import Any

import yaml

from cluster.config import INGRESS_DEPLOYMENT_NAME, ClusterConfig, ConfigError, parse_config
from cluster.k8s.serve_config import SERVE_APP_SECTIONS
from cluster.k8s.yamlio import load_document
from cluster.shadow_config import apply_user_config

BINARY_SUFFIXES = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
QUANTITY_SUFFIXES = {
    suffix: Decimal(2) ** (10 * power) for power, suffix in enumerate(BINARY_SUFFIXES, 1)
} | {suffix: Decimal(10) ** power for suffix, power in DECIMAL_EXPONENTS.items()}
STANDARD_RESOURCES = {"num_cpus": "CPU", "num_gpus": "GPU"}
OVERRIDE_KEYS = ("autoscaling_config", "num_replicas", "max_ongoing_requests", "max_queued_requests")
JOB_KEYS = ("shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit")
EPSILON = 1e-9
ARGS_KEYS = {"config", "config_path", "profile"}


def quantity(text: Any) -> Decimal:
    """A Kubernetes quantity (`500m`, `48Gi`, `2`) as a number."""
    text = str(text)
    for suffix in (text[-2:], text[-1:]):
        if suffix in QUANTITY_SUFFIXES:
            return Decimal(text[: -len(suffix)]) * QUANTITY_SUFFIXES[suffix]
    return Decimal(text)


def _ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]


def offered_resources(group: dict[str, Any]) -> dict[str, float]:
    """Ray logical resources of one pod of a group (the `resources` field, else rayStartParams and limits)."""
    if group.get("resources"):
        return {name: float(quantity(value)) for name, value in group["resources"].items()}
    limits = _ray_container(group).get("resources", {}).get("limits", {})
    params = group.get("rayStartParams", {})
    offered = {"CPU": float(quantity(params.get("num-cpus", limits.get("cpu", 0))))}
    gpus = float(quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))))
    if gpus:
        offered["GPU"] = gpus
    if params.get("resources"):
        offered.update(json.loads(params["resources"].strip("'\"").replace('\\"', '"')))
    return offered


def _asked(actor: dict[str, Any]) -> dict[str, float]:
    asked = {STANDARD_RESOURCES[k]: float(actor.get(k, 0)) for k in STANDARD_RESOURCES}
    asked.update({name: float(amount) for name, amount in (actor.get("resources") or {}).items()})
    if actor.get("accelerator_type"):
        asked[f"accelerator_type:{actor['accelerator_type']}"] = 0.001
    return {name: amount for name, amount in asked.items() if amount > 0}


def serve_schema_problems(serve: dict[str, Any]) -> list[str]:
    """Ray Serve's own schema for the config (skipped when Ray is not installed)."""
    try:
        from pydantic import ValidationError
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        return []
    try:
        ServeDeploySchema.model_validate(serve)
    except ValidationError as error:
        return [f"serveConfigV2: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    return []


def ray_service_problems(document: dict[str, Any]) -> list[str]:
    """Serve config against the app config and the worker groups of a RayService."""
    cluster = document["spec"]["rayClusterConfig"]
    try:
        serve = load_document(document["spec"]["serveConfigV2"])
    except yaml.YAMLError as error:
        return [f"serveConfigV2: not YAML: {error}"]
    groups = cluster.get("workerGroupSpecs", [])
    problems = serve_schema_problems(serve) + _port_problems(serve, cluster)
    if cluster["headGroupSpec"].get("rayStartParams", {}).get("num-cpus") != "0":
        problems.append('head: rayStartParams num-cpus must be "0" so no replica lands on the head')
    demand: dict[str, dict[str, float]] = {g["groupName"]: {} for g in groups}
    cpu_total = 0.0
    for app in serve.get("applications", []):
        app_problems, app_demand, app_cpu = _application(app, groups)
        problems += app_problems
        cpu_total += app_cpu
        for name, asked in app_demand.items():
            for resource, amount in asked.items():
                demand[name][resource] = demand[name].get(resource, 0.0) + amount
    capacity_cpu = 0.0
    for group in groups:
        offered, most = offered_resources(group), group["maxReplicas"]
        capacity_cpu += most * offered.get("CPU", 0.0)
        for resource, amount in sorted(demand[group["groupName"]].items()):
            if amount > most * offered.get(resource, 0.0) + EPSILON:
                problems.append(
                    f"group {group['groupName']}: pinned deployments may ask {amount:g} {resource} at max "
                    f"replicas; maxReplicas {most} x {offered.get(resource, 0):g} is less"
                )
        problems += _serving_group_problems(group, offered)
    if cpu_total > capacity_cpu + EPSILON:
        problems.append(f"all worker groups at max offer {capacity_cpu:g} CPUs; Serve may ask {cpu_total:g}")
    return problems


def _port_problems(serve: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    port = serve.get("http_options", {}).get("port", 8000)
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    problems = []
    for name, group in groups:
        ports = {p.get("name"): p.get("containerPort") for p in _ray_container(group).get("ports", [])}
        if ports.get("serve") != port:
            problems.append(
                f"group {name}: container port `serve` is {ports.get('serve')}, Serve listens on {port}"
            )
    return problems


def _application(
    app: dict[str, Any], groups: list[dict[str, Any]]
) -> tuple[list[str], dict[str, dict[str, float]], float]:
    """Problems of one Serve application, what it pins on each group at max replicas, and its CPUs."""
    where = f"serveConfigV2 application {app.get('name')}"
    args = app.get("args") or {}
    if set(args) - ARGS_KEYS or "config" not in args:
        return (
            [f"{where}: args must hold `config` (and only {sorted(ARGS_KEYS)}); got {sorted(args)}"],
            {},
            0.0,
        )
    try:
        config = parse_config(args["config"])
    except ConfigError as error:
        return [f"{where}: args.config is invalid: {error}"], {}, 0.0
    # Sections the app does not read would redeploy it whenever they change.
    problems = [
        f"{where}: args.config carries `{key}`, which the app does not read"
        for key in args["config"]
        if key not in SERVE_APP_SECTIONS
    ]
    overrides = {d["name"]: d for d in app.get("deployments", [])}
    expected = config.serve_deployments()
    cpu_total = 0.0
    if config.colocated_model() is None:
        problems += _ingress_problems(where, overrides.pop(INGRESS_DEPLOYMENT_NAME, None), config)
        cpu_total = config.serving.ingress.num_cpus * config.serving.ingress.num_replicas
    else:  # the one deployment is the ingress: its override carries the size's options too
        problems += _user_config_problems(where, overrides.get(INGRESS_DEPLOYMENT_NAME), config)
    if set(overrides) != set(expected):
        problems.append(
            f"{where}: deployment overrides {sorted(overrides)} differ from the config's {sorted(expected)}"
        )
    demand: dict[str, dict[str, float]] = {}
    for name in sorted(set(expected) & set(overrides)):
        override, (_, options) = overrides[name], expected[name]
        actor = override.get("ray_actor_options", {})
        problems += [
            f"{where}: {name} ray_actor_options.{key} is {actor.get(key)!r}, config says {value!r}"
            for key, value in options["ray_actor_options"].items()
            if actor.get(key) != value
        ]
        problems += [
            f"{where}: {name} {key} is {override[key]!r}, config says {options.get(key)!r}"
            for key in OVERRIDE_KEYS
            if key in override and override[key] != options.get(key)
        ]
        scaling = override.get("autoscaling_config")
        most = scaling["max_replicas"] if scaling else override.get("num_replicas", 1)
        asked = _asked(actor)
        homes = [
            g
            for g in groups
            if all(offered_resources(g).get(r, 0.0) + EPSILON >= a for r, a in asked.items())
        ]
        if not homes:
            problems.append(f"{where}: {name} asks {asked}; no worker group offers that")
            continue
        cpu_total += most * asked.get("CPU", 0.0)
        if len(homes) == 1:
            bucket = demand.setdefault(homes[0]["groupName"], {})
            for resource, amount in asked.items():
                bucket[resource] = bucket.get(resource, 0.0) + most * amount
    return problems, demand, cpu_total


def _ingress_problems(where: str, override: dict[str, Any] | None, config: ClusterConfig) -> list[str]:
    """The ingress override must hold a `user_config` its `reconfigure` accepts, and nothing else
    (its other options come from the config through the app builder)."""
    if override is None:
        return [f"{where}: no {INGRESS_DEPLOYMENT_NAME} override with the shadow user_config"]
    problems = [
        f"{where}: {INGRESS_DEPLOYMENT_NAME} override sets {key}; only user_config belongs there"
        for key in sorted(set(override) - {"name", "user_config"})
    ]
    return problems + _user_config_problems(where, override, config)


def _user_config_problems(where: str, override: dict[str, Any] | None, config: ClusterConfig) -> list[str]:
    """The ingress override's `user_config` must be one its `reconfigure` accepts."""
    if override is None:
        return [f"{where}: no {INGRESS_DEPLOYMENT_NAME} override with the shadow user_config"]
    try:
        apply_user_config(config.router.shadow, override.get("user_config"))
    except ValueError as error:
        return [f"{where}: {INGRESS_DEPLOYMENT_NAME} user_config is refused: {error}"]
    return []


def _serving_group_problems(group: dict[str, Any], offered: dict[str, float]) -> list[str]:
    name, container = group["groupName"], _ray_container(group)
    requests = container.get("resources", {}).get("requests", {})
    gpus = float(quantity(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)))
    problems = []
    if gpus != offered.get("GPU", 0.0):
        problems.append(f"group {name}: Ray sees {offered.get('GPU', 0):g} GPUs, the pod gets {gpus:g}")
    if offered.get("CPU", 0.0) > float(quantity(requests.get("cpu", 0))) + EPSILON:
        problems.append(
            f"group {name}: Ray offers {offered['CPU']:g} CPUs but the pod requests {requests.get('cpu')}"
        )
    replicas, low, high = group.get("replicas"), group.get("minReplicas", 0), group.get("maxReplicas")
    if replicas is not None and high is not None and not low <= replicas <= high:
        problems.append(f"group {name}: replicas {replicas} lies outside [{low}, {high}]")
    if "/-/healthz" not in " ".join(container.get("readinessProbe", {}).get("exec", {}).get("command", [])):
        problems.append(
            f"group {name}: a serving worker's readiness probe must check the Serve proxy (/-/healthz)"
        )
    return problems


def batch_command_problems(
    spec: dict[str, Any], config_maps: dict[str, dict[str, Any]], where: str
) -> list[str]:
    """The job runs `qwen-cluster batch` with input, output, task and a mounted config, and no date."""
    problems = [f"{where}.{key}: must be set" for key in JOB_KEYS if key not in spec]
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append(
            f"{where}.shutdownAfterJobFinishes: must be true so GPU clusters do not outlive the run"
        )
    tokens = shlex.split(spec.get("entrypoint", ""))
    if tokens[:2] == ["bash", "-c"] and len(tokens) == 3:
        tokens = shlex.split(tokens[2].split(";")[0])
    if tokens[:2] != ["qwen-cluster", "batch"]:
        return problems + [f"{where}.entrypoint: must run `qwen-cluster batch`, got {tokens[:2]}"]
    flags = {tokens[i]: tokens[i + 1] for i in range(2, len(tokens) - 1) if tokens[i].startswith("--")}
    problems += [
        f"{where}.entrypoint: {flag} is missing"
        for flag in ("--input", "--output", "--task", "--config")
        if flag not in flags
    ]
    if "--date" in tokens:
        problems.append(
            f"{where}.entrypoint: --date must be left to the command (today, UTC) so every run is fresh"
        )
    if "--config" in flags:
        problems += _config_file_problems(flags["--config"], spec, config_maps, where)
    return problems


def _config_file_problems(
    path: str, spec: dict[str, Any], config_maps: dict[str, dict[str, Any]], where: str
) -> list[str]:
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    folder, key = posixpath.split(path)
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in head["containers"][0].get("volumeMounts", [])}
    volumes = {v["name"]: v for v in head.get("volumes", [])}
    map_name = volumes.get(mounts.get(folder.rstrip("/"), ""), {}).get("configMap", {}).get("name")
    if map_name is None:
        return [f"{where}.entrypoint: --config {path} is not on a mounted ConfigMap in the head pod"]
    data = config_maps.get(map_name, {}).get("data", {})
    if key not in data:
        return [f"{where}.entrypoint: ConfigMap {map_name} has no key {key!r}"]
    try:
        parse_config(load_document(data[key]))
    except (ConfigError, yaml.YAMLError, AttributeError) as error:
        return [f"ConfigMap {map_name}.{key}: invalid cluster config: {error}"]
    return []


def batch_problems(documents: list[dict[str, Any]]) -> list[str]:
    """One job spec for the RayJob, the RayCronJob and the plain CronJob's template; each complete."""
    config_maps = {d["metadata"]["name"]: d for d in documents if d.get("kind") == "ConfigMap"}
    specs: list[tuple[str, dict[str, Any]]] = []
    retrains: list[tuple[str, dict[str, Any]]] = []
    for document in documents:
        kind, metadata = document.get("kind"), document.get("metadata", {})
        name = metadata.get("name") or metadata.get("generateName")
        if kind == "RayJob":
            specs.append((f"RayJob {name} spec", document["spec"]))
        elif kind == "RayCronJob" and _runs_retrain(document["spec"]["jobTemplate"]):
            retrains.append((f"RayCronJob {name} spec.jobTemplate", document["spec"]["jobTemplate"]))
        elif kind == "RayCronJob":
            specs.append((f"RayCronJob {name} spec.jobTemplate", document["spec"]["jobTemplate"]))
        elif kind == "ConfigMap" and "ray-job.yaml" in document.get("data", {}):
            embedded = load_document(document["data"]["ray-job.yaml"])
            specs.append((f"ConfigMap {name} ray-job.yaml spec", embedded.get("spec", {})))
    problems = [p for where, spec in specs for p in batch_command_problems(spec, config_maps, where)]
    problems += [p for where, spec in retrains for p in _retrain_problems(spec, specs, config_maps, where)]
    return problems + [
        f"{where}: differs from {specs[0][0]}; all schedules must run the same job"
        for where, spec in specs[1:]
        if spec != specs[0][1]
    ]


def _runs_retrain(spec: dict[str, Any]) -> bool:
    return shlex.split(spec.get("entrypoint", ""))[:3] == ["qwen-cluster", "router", "retrain"]


def _retrain_problems(
    spec: dict[str, Any],
    batch_specs: list[tuple[str, dict[str, Any]]],
    config_maps: dict[str, dict[str, Any]],
    where: str,
) -> list[str]:
    """The router retrain job: `--labels` and a mounted `--config`, and otherwise the batch job's
    spec (cluster, deadlines but its own, config map), so both run on what was validated once."""
    tokens = shlex.split(spec.get("entrypoint", ""))
    flags = {tokens[i]: tokens[i + 1] for i in range(3, len(tokens) - 1) if tokens[i].startswith("--")}
    problems = [
        f"{where}.entrypoint: {flag} is missing" for flag in ("--labels", "--config") if flag not in flags
    ]
    if "--config" in flags:
        problems += _config_file_problems(flags["--config"], spec, config_maps, where)
    own = ("entrypoint", "activeDeadlineSeconds")
    if batch_specs:
        first_where, first = batch_specs[0]
        if {k: v for k, v in spec.items() if k not in own} != {
            k: v for k, v in first.items() if k not in own
        }:
            problems.append(f"{where}: differs from {first_where} beyond its entrypoint and deadline")
    return problems
