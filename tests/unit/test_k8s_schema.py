"""Single-manifest schema validation (jsonschema + cel-python on the CRDs, kubernetes-validate for core kinds)."""

from __future__ import annotations

import pytest

from cluster.k8s.schemas import SchemaValidator, default_crd_dir, load_crds, strict_schema, vendored_crd_dir

pytestmark = pytest.mark.unit

Crds = dict[tuple[str, str], dict]


@pytest.fixture(scope="module")
def catalog() -> Crds:
    # The CRDs are vendored in infra/crds/: a missing one is an error, never a skip.
    return load_crds(default_crd_dir(), vendored_crd_dir())


@pytest.fixture(scope="module")
def validator(catalog: Crds) -> SchemaValidator:
    return SchemaValidator(catalog)


def problems(document: dict, catalog: Crds) -> list[str]:
    return SchemaValidator(catalog).problems(document)


def _container(name: str, image: str = "rayproject/ray:2.52.0") -> dict:
    return {
        "name": name,
        "image": image,
        "ports": [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
        ],
        "resources": {"limits": {"cpu": 1, "memory": "2G"}, "requests": {"cpu": "200m", "memory": "2G"}},
    }


def sample_cluster_spec() -> dict:
    """Shaped like KubeRay's ray-cluster.mini / autoscaler samples (integers where YAML gives integers)."""
    return {
        "rayVersion": "2.52.0",
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 60, "version": "v2"},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},
            "template": {
                "spec": {
                    "containers": [_container("ray-head")],
                    "volumes": [
                        {
                            "name": "code-sample",
                            "configMap": {"name": "ray-job-code", "items": [{"key": "a.py", "path": "a.py"}]},
                        }
                    ],
                }
            },
        },
        "workerGroupSpecs": [
            {
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 5,
                "groupName": "small-group",
                "rayStartParams": {},
                "template": {"spec": {"containers": [_container("ray-worker")], "restartPolicy": "Never"}},
            }
        ],
    }


def sample_ray_service() -> dict:
    worker = sample_cluster_spec()["workerGroupSpecs"][0]
    worker["template"]["spec"]["containers"][0]["env"] = [
        {
            "name": "HUGGING_FACE_HUB_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf_token"}},
        }
    ]
    worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "ray-serve-llm"},
        "spec": {
            "serveConfigV2": "applications:\n- name: llms\n  import_path: ray.serve.llm:build_openai_app\n",
            "rayClusterConfig": {**sample_cluster_spec(), "workerGroupSpecs": [worker]},
        },
    }


def sample_ray_job() -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "rayjob-sample"},
        "spec": {
            "entrypoint": "python /home/ray/samples/sample_code.py",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "runtimeEnvYAML": "pip:\n  - requests==2.26.0\n",
            "rayClusterSpec": sample_cluster_spec(),
            "submitterPodTemplate": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "submitter", "image": "rayproject/ray:2.52.0"}],
                }
            },
        },
    }


def sample_ray_cron_job() -> dict:
    job = sample_ray_job()["spec"]
    del job["submitterPodTemplate"]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": "raycronjob-sample"},
        "spec": {"schedule": "* * * * *", "timeZone": "America/Los_Angeles", "jobTemplate": job},
    }


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "metadata": {"name": "mini"},
                "spec": sample_cluster_spec(),
            },
            id="RayCluster",
        ),
        pytest.param(sample_ray_service(), id="RayService"),
        pytest.param(sample_ray_job(), id="RayJob"),
        pytest.param(sample_ray_cron_job(), id="RayCronJob"),
    ],
)
def test_accepts_kuberay_sample_shapes(document: dict, validator: SchemaValidator) -> None:
    assert validator.problems(document) == []


def test_rejects_an_unknown_field_instead_of_pruning_it(validator: SchemaValidator) -> None:
    document = sample_ray_service()
    document["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {"num-cpus": "0"}
    document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "imagePullPolcy"
    ] = "Always"
    found = validator.problems(document)
    assert "spec.rayClusterConfig.headGroupSpec.rayStartParam: unknown field" in found
    assert (
        "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].imagePullPolcy: unknown field"
        in found
    )
    assert len(found) == 2


def test_rejects_an_unknown_top_level_and_metadata_field(validator: SchemaValidator) -> None:
    document = sample_ray_job()
    document["specs"] = {}
    document["metadata"]["label"] = {"a": "b"}
    assert sorted(validator.problems(document)) == ["metadata.label: unknown field", "specs: unknown field"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "replicas"), "1", "is not of type 'integer'"),
        (("spec", "rayClusterConfig", "enableInTreeAutoscaling"), "true", "is not of type 'boolean'"),
        (
            ("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", "num-cpus"),
            0,
            "is not of type 'string'",
        ),
        (("spec", "serveConfigV2"), {"applications": []}, "is not of type 'string'"),
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "maxReplicas"), 2**31, "is not a 'int32'"),
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "maxReplicas"), 4.0, "is not of type 'integer'"),
    ],
)
def test_rejects_a_wrong_type(path: tuple, value: object, expected: str, validator: SchemaValidator) -> None:
    document = sample_ray_service()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = validator.problems(document)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith(".".join(str(k) for k in path[:-1] if not isinstance(k, int))[:20])


def test_rejects_a_missing_required_field(validator: SchemaValidator) -> None:
    document = sample_ray_service()
    del document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]
    del document["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    assert sorted(validator.problems(document)) == [
        "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0]: 'name' is a required property",
        "spec.rayClusterConfig.workerGroupSpecs[0]: 'groupName' is a required property",
    ]
    missing_spec = sample_ray_cron_job()
    del missing_spec["spec"]["schedule"]
    assert validator.problems(missing_spec) == ["spec: 'schedule' is a required property"]


def test_int_or_string_takes_integers_and_quantities_but_not_floats_or_bad_units(
    validator: SchemaValidator,
) -> None:
    document = sample_ray_job()
    limits = document["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]
    limits.update({"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": "1"})
    assert validator.problems(document) == []
    limits["cpu"] = 2.5
    limits["memory"] = "4GB"
    found = validator.problems(document)
    assert len(found) == 2
    assert any("limits.cpu: 2.5 is not valid under any of the given schemas" in p for p in found), found
    assert any("limits.memory: '4GB' does not match" in p for p in found), found


def test_rejects_null_duplicate_map_keys_and_bad_labels(validator: SchemaValidator) -> None:
    document = sample_ray_service()
    container = document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][
        0
    ]
    container["env"].append({"name": "HUGGING_FACE_HUB_TOKEN", "value": "x"})
    container["image"] = None
    document["metadata"]["labels"] = {"team": "ml ops"}
    found = validator.problems(document)
    assert any("containers[0].env: item 1 repeats ['name']" in p for p in found), found
    assert any("containers[0].image: None is not of type 'string'" in p for p in found), found
    assert any("metadata.labels.team: 'ml ops' is not a valid label value" in p for p in found), found
    assert len(found) == 3


def test_metadata_needs_a_name_and_the_version_must_be_served(validator: SchemaValidator) -> None:
    document = sample_ray_job()
    document["metadata"] = {"namespace": "Qwen"}
    assert sorted(validator.problems(document)) == [
        "metadata.namespace: 'Qwen' is not a DNS-1123 label",
        "metadata: name or generateName is required",
    ]
    document = sample_ray_job()
    document["apiVersion"] = "ray.io/v2"
    assert validator.problems(document) == ["<root>: no schema for apiVersion 'ray.io/v2', kind 'RayJob'"]
    generated = sample_ray_job()
    generated["metadata"] = {"generateName": "nightly-"}
    assert validator.problems(generated) == []


def test_cel_rules_are_enforced(catalog: Crds) -> None:
    validator = SchemaValidator(catalog)
    document = sample_ray_job()
    document["spec"]["deletionStrategy"] = {"onSuccess": {"policy": "DeleteCluster"}}
    assert validator.problems(document) == [
        "spec.deletionStrategy: deletionStrategy requires either BOTH onSuccess and onFailure, OR the "
        "deletionRules field (cannot be empty)"
    ]
    document["spec"]["deletionStrategy"] = {
        "onSuccess": {"policy": "DeleteCluster"},
        "onFailure": {"policy": "DeleteNone"},
        "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}],
    }
    assert len(validator.problems(document)) == 1
    document["spec"]["deletionStrategy"] = {
        "deletionRules": [
            {
                "policy": "DeleteCluster",
                "condition": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Failed"},
            }
        ]
    }
    assert validator.problems(document) == [
        "spec.deletionStrategy.deletionRules[0].condition: JobStatus and JobDeploymentStatus cannot be used "
        "together within the same deletion condition."
    ]
    document["spec"]["deletionStrategy"]["deletionRules"][0]["condition"] = {"jobStatus": "SUCCEEDED"}
    document["spec"]["managedBy"] = "ray.io/kuberay-operator"
    assert validator.problems(document) == []
    document["spec"]["managedBy"] = "someone-else"
    assert validator.problems(document) == [
        "spec.managedBy: the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'"
    ]
    # Transition rules (`self == oldSelf`) need the stored object and are skipped, as on create.
    assert validator.tally.cel_rules >= 8


def _rules(schema: object) -> set[str]:
    if isinstance(schema, dict):
        found = {rule["rule"] for rule in schema.get("x-kubernetes-validations", [])}
        return found.union(*(_rules(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_rules(value) for value in schema))
    return set()


def test_every_crd_rule_compiles_with_cel_python(catalog: Crds) -> None:
    import celpy

    rules = set().union(*(_rules(schema) for schema in catalog.values()))
    assert len(rules) >= 5 and any("oldSelf" in rule for rule in rules)
    environment = celpy.Environment()
    for rule in rules:
        environment.program(environment.compile(rule))


def test_catalog_has_the_kuberay_kinds_and_the_vendored_pod_monitor(catalog: Crds) -> None:
    kinds = sorted({kind for _, kind in catalog})
    assert kinds == ["PodMonitor", "RayCluster", "RayCronJob", "RayJob", "RayService"]
    assert ("ray.io/v1", "RayCronJob") in catalog and ("monitoring.coreos.com/v1", "PodMonitor") in catalog


def test_pod_monitor_and_core_kinds_are_strict(validator: SchemaValidator) -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "qwen-ray"},
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "metrics", "intervall": "30s"}]},
    }
    assert validator.problems(monitor) == ["spec.podMetricsEndpoints[0].intervall: unknown field"]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}}
    assert validator.problems(config_map) == ["data.a: 1 is not of type 'string', 'null'"]
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "concurrencyPolicy": "Forbid", "jobTemplat": {}},
    }
    assert sorted(validator.problems(cron)) == [
        "spec.jobTemplat: unknown field",
        "spec: 'jobTemplate' is a required property",
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r"},
        "rules": [{}],
    }
    assert validator.problems(role) == ["rules[0]: 'verbs' is a required property"]


# Synthetic schema: the strict transform and the Kubernetes extensions without the CRDs.
MAP_SCHEMA = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"n": {"type": "integer"}},
        },
        "nested": {"type": "object", "properties": {"a": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "size": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "count": {"type": "integer", "minimum": 1},
        "maybe": {"type": "string", "nullable": True},
    },
    "x-kubernetes-validations": [
        {"rule": "!(has(self.mode) && has(self.free))", "message": "mode and free exclude each other"},
        {"rule": "self == oldSelf"},
    ],
}


def test_strict_transform_preserved_fields_sets_enums_bounds_and_rules() -> None:
    strict = strict_schema(MAP_SCHEMA)
    assert (
        strict["additionalProperties"] is False
        and strict["properties"]["nested"]["additionalProperties"] is False
    )
    assert "additionalProperties" not in strict["properties"]["free"]
    assert strict["properties"]["maybe"]["type"] == ["string", "null"]
    assert "additionalProperties" not in MAP_SCHEMA, "the CRD schema itself is left alone"
    validator = SchemaValidator({("example.com/v1", "Thing"): MAP_SCHEMA})

    def check(**fields: object) -> list[str]:
        document = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, **fields}
        return validator.problems(document)

    assert check(labels={"x": "1"}, free={"n": 1, "anything": [1, {"deep": True}]}, tags=["a", "b"]) == []
    assert check(size="1Gi", mode="a", count=1, maybe=None, nested={"a": "x"}) == []
    found = check(
        labels={"x": 1}, free={"n": "one"}, tags=["a", "a"], size=True, mode="c", count=0, nested={"b": 1}
    )
    assert sorted(p.split(":")[0] for p in found) == [
        "<root>",
        "count",
        "free.n",
        "labels.x",
        "mode",
        "nested.b",
        "size",
        "tags",
    ], found
    assert "<root>: mode and free exclude each other" in found
    assert validator.tally.cel_rules == 3  # one rule per document; the transition rule never runs


def test_a_rule_that_errors_is_reported_not_raised() -> None:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "a": {"type": "integer"},
        },
        "x-kubernetes-validations": [{"rule": "self.a.size() > 0"}, {"rule": "self.a >"}],
    }
    validator = SchemaValidator({("example.com/v1", "Thing"): schema})
    found = validator.problems(
        {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "a": 1}
    )
    assert len(found) == 2 and "rule 'self.a.size() > 0' errors: no such overload" in found[0], found
    assert "rule 'self.a >' does not compile" in found[1]
