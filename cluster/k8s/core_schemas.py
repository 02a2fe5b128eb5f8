"""Structural schemas for the few non-Ray kinds rendered here, in the CRD schema dialect.

Only the fields these manifests may use are defined, so a typo is an unknown field, as with the CRDs.
The CronJob's pod template reuses the PodTemplateSpec schema embedded in the RayJob CRD
(`spec.submitterPodTemplate`), the same Kubernetes core schema at the same version.
"""

from __future__ import annotations

from typing import Any

from cluster.k8s.schema import CrdCatalog, schema_at

STRING = {"type": "string"}
INTEGER = {"type": "integer", "format": "int32"}
STRINGS = {"type": "array", "items": STRING}
STRING_MAP = {"type": "object", "additionalProperties": STRING}
FREE_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _kind(
    api_version: str, kind: str, properties: dict[str, Any], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"type": "string", "enum": [api_version]},
            "kind": {"type": "string", "enum": [kind]},
            "metadata": {"type": "object"},
            **properties,
        },
        required,
    )


def _selector() -> dict[str, Any]:
    requirement = _object({"key": STRING, "operator": STRING, "values": STRINGS}, ("key", "operator"))
    return _object({"matchLabels": STRING_MAP, "matchExpressions": {"type": "array", "items": requirement}})


def core_schemas(catalog: CrdCatalog) -> dict[tuple[str, str], dict[str, Any]]:
    """`(apiVersion, kind) -> schema` for ConfigMap, ServiceAccount, Role, RoleBinding, CronJob, PodMonitor."""
    ray_job = catalog.schema_for("ray.io/v1", "RayJob")
    if ray_job is None:
        raise KeyError("the RayJob CRD is needed for the PodTemplateSpec schema")
    pod_template = schema_at(ray_job, "spec.submitterPodTemplate")
    job_spec = _object(
        {
            "backoffLimit": INTEGER,
            "activeDeadlineSeconds": {"type": "integer", "format": "int64", "minimum": 1},
            "ttlSecondsAfterFinished": INTEGER,
            "template": pod_template,
        },
        ("template",),
    )
    rule = _object(
        {
            "apiGroups": STRINGS,
            "resources": STRINGS,
            "verbs": {**STRINGS, "minItems": 1},
            "resourceNames": STRINGS,
        },
        ("verbs",),
    )
    subject = _object(
        {"kind": STRING, "name": STRING, "namespace": STRING, "apiGroup": STRING}, ("kind", "name")
    )
    relabel = _object(
        {
            "sourceLabels": STRINGS,
            "targetLabel": STRING,
            "regex": STRING,
            "replacement": STRING,
            "action": STRING,
        }
    )
    endpoint = _object(
        {
            "port": STRING,
            "path": STRING,
            "interval": STRING,
            "scheme": STRING,
            "relabelings": {"type": "array", "items": relabel},
        }
    )
    return {
        ("v1", "ConfigMap"): _kind(
            "v1", "ConfigMap", {"data": STRING_MAP, "immutable": {"type": "boolean"}}, ("apiVersion", "kind")
        ),
        ("v1", "ServiceAccount"): _kind(
            "v1",
            "ServiceAccount",
            {"automountServiceAccountToken": {"type": "boolean"}},
            ("apiVersion", "kind"),
        ),
        ("rbac.authorization.k8s.io/v1", "Role"): _kind(
            "rbac.authorization.k8s.io/v1", "Role", {"rules": {"type": "array", "items": rule}}, ("rules",)
        ),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"): _kind(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            {
                "roleRef": _object(
                    {"apiGroup": STRING, "kind": STRING, "name": STRING}, ("apiGroup", "kind", "name")
                ),
                "subjects": {"type": "array", "items": subject},
            },
            ("roleRef",),
        ),
        ("batch/v1", "CronJob"): _kind(
            "batch/v1",
            "CronJob",
            {
                "spec": _object(
                    {
                        "schedule": STRING,
                        "timeZone": STRING,
                        "suspend": {"type": "boolean"},
                        "concurrencyPolicy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"]},
                        "startingDeadlineSeconds": {"type": "integer", "format": "int64"},
                        "successfulJobsHistoryLimit": INTEGER,
                        "failedJobsHistoryLimit": INTEGER,
                        "jobTemplate": _object({"metadata": FREE_OBJECT, "spec": job_spec}, ("spec",)),
                    },
                    ("schedule", "jobTemplate"),
                )
            },
            ("spec",),
        ),
        ("monitoring.coreos.com/v1", "PodMonitor"): _kind(
            "monitoring.coreos.com/v1",
            "PodMonitor",
            {
                "spec": _object(
                    {
                        "selector": _selector(),
                        "namespaceSelector": _object({"any": {"type": "boolean"}, "matchNames": STRINGS}),
                        "podMetricsEndpoints": {"type": "array", "items": endpoint, "minItems": 1},
                    },
                    ("selector", "podMetricsEndpoints"),
                )
            },
            ("spec",),
        ),
    }


def kustomization_schema() -> dict[str, Any]:
    """The Kustomization fields the rendered kustomizations use."""
    target = _object({"group": STRING, "version": STRING, "kind": STRING, "name": STRING}, ("kind", "name"))
    return _object(
        {
            "apiVersion": {"type": "string", "enum": ["kustomize.config.k8s.io/v1beta1"]},
            "kind": {"type": "string", "enum": ["Kustomization"]},
            "namespace": STRING,
            "resources": {**STRINGS, "minItems": 1},
            "patches": {
                "type": "array",
                "items": _object({"path": STRING, "target": target}, ("path", "target")),
            },
        },
        ("apiVersion", "kind", "resources"),
    )


def json_patch_schema() -> dict[str, Any]:
    """A JSON patch (RFC 6902) limited to add, remove and replace."""
    operation = _object(
        {
            "op": {"type": "string", "enum": ["add", "remove", "replace"]},
            "path": {"type": "string", "pattern": "^/"},
            "value": {"x-kubernetes-preserve-unknown-fields": True, "nullable": True},
        },
        ("op", "path"),
    )
    return {"type": "array", "items": operation, "minItems": 1}
