"""Checks the KubeRay operator makes that the CRD schema cannot express.

A subset of KubeRay v1.7.0's `ray-operator/controllers/ray/utils/validation.go`: name limits, group
resource and replica rules, autoscaler v2 restart policy, RayJob deadlines and TTL, RayService
upgrade options and the RayCronJob schedule and time zone. A manifest failing these is accepted by
the API server and then rejected by the operator, which is the slow way to find out.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_RAY_CLUSTER_NAME = 53  # 63 - len("-serve-svc")
MAX_RAY_SERVICE_NAME = MAX_RAY_CLUSTER_NAME - 6
MAX_RAY_JOB_NAME = MAX_RAY_CLUSTER_NAME - 6
# KubeRay bounds RayCronJob names so the child RayJob name stays valid; this leaves room for the
# child's suffix under the RayJob limit (a conservative reading, the exact constant is not public here).
MAX_RAY_CRON_JOB_NAME = MAX_RAY_JOB_NAME - 6
RESOURCE_START_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
UPGRADE_TYPES = ("NewCluster", "NewClusterWithIncrementalUpgrade", "None")
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
CRON_NAMES = ({}, {}, {}, {m: i for i, m in enumerate(MONTHS, 1)}, {d: i for i, d in enumerate(WEEKDAYS)})
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _name_problems(kind: str, metadata: dict[str, Any], limit: int) -> list[str]:
    name = metadata.get("name")
    if name is None:
        # generateName: the server adds 5 characters.
        prefix = metadata.get("generateName", "")
        name = prefix + "x" * 5
    problems = []
    if len(name) > limit:
        problems.append(f"metadata.name: a {kind} name must have at most {limit} characters ({name!r})")
    if not DNS1035_LABEL.match(name):
        problems.append(f"metadata.name: a {kind} name must be a DNS-1035 label ({name!r})")
    return problems


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template.get("spec", {}).get("containers", [])


def cluster_spec_problems(spec: dict[str, Any], path: str) -> list[str]:
    """ValidateRayClusterSpec: containers, replica bounds, resource fields, autoscaler v2 rules."""
    problems = []
    head = spec.get("headGroupSpec", {})
    if not _containers(head.get("template", {})):
        problems.append(f"{path}.headGroupSpec: needs at least one container")
    groups = [("head", head)] + [(g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs", [])]
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    options = spec.get("autoscalerOptions") or {}
    v2 = autoscaling and options.get("version") == "v2"
    names = [name for name, _ in groups[1:]]
    if len(set(names)) != len(names):
        problems.append(f"{path}.workerGroupSpecs: group names must be unique")
    for name, group in groups:
        where = f"{path} group {name}"
        params = group.get("rayStartParams", {}) or {}
        if group.get("resources") and any(params.get(k) for k in RESOURCE_START_PARAMS):
            problems.append(f"{where}: resources set both in rayStartParams and in `resources`")
        if "labels" in params:
            problems.append(f"{where}: rayStartParams['labels'] is not supported; use the `labels` field")
        template = group.get("template", {})
        if name != "head":
            if not _containers(template):
                problems.append(f"{where}: needs at least one container")
            low, high = group.get("minReplicas"), group.get("maxReplicas")
            if not autoscaling and (low is None or high is None):
                problems.append(f"{where}: minReplicas and maxReplicas are required without autoscaling")
            if low is not None and high is not None and low > high:
                problems.append(f"{where}: minReplicas {low} exceeds maxReplicas {high}")
            if group.get("idleTimeoutSeconds") is not None and not v2:
                problems.append(f"{where}: idleTimeoutSeconds needs autoscaler v2")
            if autoscaling and group.get("suspend"):
                problems.append(f"{where}: cannot be suspended with autoscaling")
        policy = template.get("spec", {}).get("restartPolicy")
        if v2 and policy not in (None, "", "Never"):
            problems.append(f"{where}: restartPolicy must be Never or unset with autoscaler v2")
    head_env = {e.get("name") for c in _containers(head.get("template", {}))[:1] for e in c.get("env", [])}
    if autoscaling and options.get("version") and "RAY_enable_autoscaler_v2" in head_env:
        problems.append(f"{path}: set autoscalerOptions.version or RAY_enable_autoscaler_v2, not both")
    if options.get("idleTimeoutSeconds", 0) < 0:
        problems.append(f"{path}.autoscalerOptions.idleTimeoutSeconds: must not be negative")
    return problems


def job_spec_problems(spec: dict[str, Any], path: str) -> list[str]:
    """ValidateRayJobSpec (the parts a rendered job can get wrong)."""
    problems = []
    shutdown = spec.get("shutdownAfterJobFinishes", False)
    if spec.get("suspend") and not shutdown:
        problems.append(f"{path}: a suspended RayJob needs shutdownAfterJobFinishes")
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    if ttl < 0:
        problems.append(f"{path}.ttlSecondsAfterFinished: must not be negative")
    if not shutdown and ttl > 0:
        problems.append(f"{path}: ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
        problems.append(f"{path}: one of rayClusterSpec or clusterSelector is required")
    if spec.get("submissionMode") == "InteractiveMode" and spec.get("backoffLimit", 0) > 0:
        problems.append(f"{path}: backoffLimit is incompatible with InteractiveMode")
    # preRunningDeadlineSeconds >= 1 is in the CRD schema.
    if spec.get("activeDeadlineSeconds", 1) <= 0:
        problems.append(f"{path}.activeDeadlineSeconds: must be positive")
    if spec.get("backoffLimit", 0) < 0:
        problems.append(f"{path}.backoffLimit: must not be negative")
    if spec.get("rayClusterSpec"):
        problems += cluster_spec_problems(spec["rayClusterSpec"], f"{path}.rayClusterSpec")
    return problems


def _cron_field_problems(text: str, index: int) -> list[str]:
    low, high = CRON_RANGES[index]
    names = CRON_NAMES[index]
    problems = []
    for part in text.split(","):
        body, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            problems.append(f"bad step {step!r}")
        if body in ("*", "?"):
            continue
        bounds = body.split("-")
        if len(bounds) > 2:
            problems.append(f"bad range {body!r}")
            continue
        values = []
        for bound in bounds:
            value = names.get(bound.upper(), int(bound) if bound.isdigit() else None)
            if value is None or not low <= value <= high:
                problems.append(f"{bound!r} is outside {low}-{high}")
            values.append(value)
        if len(values) == 2 and None not in values and values[0] > values[1]:
            problems.append(f"range {body!r} runs backwards")
    return problems


def cron_problems(schedule: str) -> list[str]:
    """A standard five-field cron schedule or a @macro (what robfig/cron's ParseStandard takes)."""
    if "TZ" in schedule:
        return ["use timeZone instead of TZ/CRON_TZ in the schedule"]
    if schedule.startswith("@"):
        known = schedule in CRON_MACROS or schedule.startswith("@every ")
        return [] if known else [f"unknown macro {schedule!r}"]
    fields = schedule.split()
    if len(fields) != 5:
        return [f"needs five fields, got {len(fields)}"]
    return [problem for index, text in enumerate(fields) for problem in _cron_field_problems(text, index)]


def time_zone_problems(time_zone: str) -> list[str]:
    """The time zone must exist in the IANA database."""
    if time_zone == "":
        return ["timeZone must not be empty; omit it for the operator's local zone"]
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [f"unknown time zone {time_zone!r}"]
    return []


def operator_problems(document: dict[str, Any]) -> list[str]:
    """What KubeRay would reject in a RayCluster, RayService, RayJob or RayCronJob."""
    kind, spec = document.get("kind"), document.get("spec", {})
    metadata = document.get("metadata", {})
    if kind == "RayCluster":
        return _name_problems(kind, metadata, MAX_RAY_CLUSTER_NAME) + cluster_spec_problems(spec, "spec")
    if kind == "RayJob":
        return _name_problems(kind, metadata, MAX_RAY_JOB_NAME) + job_spec_problems(spec, "spec")
    if kind == "RayCronJob":
        problems = _name_problems(kind, metadata, MAX_RAY_CRON_JOB_NAME)
        problems += [f"spec.schedule: {p}" for p in cron_problems(spec.get("schedule", ""))]
        if "timeZone" in spec:
            problems += [f"spec.timeZone: {p}" for p in time_zone_problems(spec["timeZone"])]
        return problems + job_spec_problems(spec.get("jobTemplate", {}), "spec.jobTemplate")
    if kind == "RayService":
        problems = _name_problems(kind, metadata, MAX_RAY_SERVICE_NAME)
        cluster = spec.get("rayClusterConfig", {})
        problems += cluster_spec_problems(cluster, "spec.rayClusterConfig")
        if cluster.get("headGroupSpec", {}).get("headService", {}).get("metadata", {}).get("name"):
            problems.append("spec.rayClusterConfig.headGroupSpec.headService.metadata.name: must not be set")
        strategy = spec.get("upgradeStrategy") or {}
        if strategy.get("type") is not None and strategy["type"] not in UPGRADE_TYPES:
            problems.append(f"spec.upgradeStrategy.type: {strategy['type']!r} is not one of {UPGRADE_TYPES}")
        if strategy.get("type") == "NewClusterWithIncrementalUpgrade":
            problems += _incremental_problems(strategy.get("clusterUpgradeOptions"), cluster)
        return problems
    return []


def _incremental_problems(options: dict[str, Any] | None, cluster: dict[str, Any]) -> list[str]:
    where = "spec.upgradeStrategy.clusterUpgradeOptions"
    if not cluster.get("enableInTreeAutoscaling"):
        return ["spec.upgradeStrategy: NewClusterWithIncrementalUpgrade needs the Ray autoscaler"]
    if not options:
        return [f"{where}: required for NewClusterWithIncrementalUpgrade"]
    problems = []
    surge, step = options.get("maxSurgePercent", 100), options.get("stepSizePercent")
    if not 0 <= surge <= 100:
        problems.append(f"{where}.maxSurgePercent: must lie in 0-100")
    if step is None or not 0 <= step <= 100 or step > surge:
        problems.append(f"{where}.stepSizePercent: must lie in 0-100 and not exceed maxSurgePercent")
    if not options.get("intervalSeconds", 0) > 0:
        problems.append(f"{where}.intervalSeconds: must be positive")
    if not options.get("gatewayClassName"):
        problems.append(f"{where}.gatewayClassName: required")
    return problems
