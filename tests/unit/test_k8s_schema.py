"""The strict structural-schema validator and its CEL subset, on synthetic schemas and the KubeRay CRDs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cluster.k8s.cel import CelUnsupported, compile_rule
from cluster.k8s.schema import CrdCatalog, StructuralValidator, iter_rules, load_crds

pytestmark = pytest.mark.unit

CRD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay" / "crds"


@pytest.fixture(scope="module")
def catalog() -> CrdCatalog:
    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (clone shared/ beside the repo)")
    return load_crds(CRD_DIR)


def problems(document: dict, catalog: CrdCatalog) -> list[str]:
    return StructuralValidator().validate_resource(document, catalog)


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
def test_accepts_kuberay_sample_shapes(document: dict, catalog: CrdCatalog) -> None:
    assert problems(document, catalog) == []


def test_rejects_an_unknown_field_instead_of_pruning_it(catalog: CrdCatalog) -> None:
    document = sample_ray_service()
    document["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {"num-cpus": "0"}
    document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "imagePullPolcy"
    ] = "Always"
    found = problems(document, catalog)
    assert "spec.rayClusterConfig.headGroupSpec.rayStartParam: unknown field" in found
    assert (
        "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].imagePullPolcy: unknown field"
        in found
    )
    assert len(found) == 2


def test_rejects_an_unknown_top_level_and_metadata_field(catalog: CrdCatalog) -> None:
    document = sample_ray_job()
    document["specs"] = {}
    document["metadata"]["label"] = {"a": "b"}
    assert sorted(problems(document, catalog)) == ["metadata.label: unknown field", "specs: unknown field"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "replicas"), "1", "must be of type integer"),
        (("spec", "rayClusterConfig", "enableInTreeAutoscaling"), "true", "must be of type boolean"),
        (
            ("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", "num-cpus"),
            0,
            "must be of type string",
        ),
        (("spec", "serveConfigV2"), {"applications": []}, "must be of type string"),
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "maxReplicas"), 2**31, "out of int32 range"),
    ],
)
def test_rejects_a_wrong_type(path: tuple, value: object, expected: str, catalog: CrdCatalog) -> None:
    document = sample_ray_service()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = problems(document, catalog)
    assert len(found) == 1 and expected in found[0], found


def test_rejects_a_missing_required_field(catalog: CrdCatalog) -> None:
    document = sample_ray_service()
    del document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]
    del document["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    assert sorted(problems(document, catalog)) == [
        "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].name: required field is missing",
        "spec.rayClusterConfig.workerGroupSpecs[0].groupName: required field is missing",
    ]
    missing_spec = sample_ray_cron_job()
    del missing_spec["spec"]["schedule"]
    assert problems(missing_spec, catalog) == ["spec.schedule: required field is missing"]


def test_int_or_string_takes_integers_and_quantities_but_not_floats_or_bad_units(catalog: CrdCatalog) -> None:
    document = sample_ray_job()
    limits = document["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]
    limits.update({"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": "1"})
    assert problems(document, catalog) == []
    limits["cpu"] = 2.5
    limits["memory"] = "4GB"
    found = problems(document, catalog)
    assert len(found) == 2
    assert any("cpu: must be an integer or a string, got float" in p for p in found)
    assert any("memory: '4GB' does not match" in p for p in found)


def test_rejects_null_duplicate_map_keys_and_bad_labels(catalog: CrdCatalog) -> None:
    document = sample_ray_service()
    container = document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][
        0
    ]
    container["env"].append({"name": "HUGGING_FACE_HUB_TOKEN", "value": "x"})
    container["image"] = None
    document["metadata"]["labels"] = {"team": "ml ops"}
    found = problems(document, catalog)
    assert any("env[1]: duplicate entry for keys ['name']" in p for p in found)
    assert any("containers[0].image: null is not allowed" in p for p in found)
    assert any("metadata.labels.team: 'ml ops' is not a valid label value" in p for p in found)
    assert len(found) == 3


def test_metadata_needs_a_name_and_the_version_must_be_served(catalog: CrdCatalog) -> None:
    document = sample_ray_job()
    document["metadata"] = {"namespace": "Qwen"}
    assert sorted(problems(document, catalog)) == [
        "metadata.namespace: 'Qwen' is not a DNS-1123 label",
        "metadata: name or generateName is required",
    ]
    document = sample_ray_job()
    document["apiVersion"] = "ray.io/v2"
    assert problems(document, catalog) == [
        "<root>: no served CRD version for apiVersion 'ray.io/v2', kind 'RayJob'"
    ]
    generated = sample_ray_job()
    generated["metadata"] = {"generateName": "nightly-"}
    assert problems(generated, catalog) == []


def test_cel_rules_are_enforced(catalog: CrdCatalog) -> None:
    document = sample_ray_job()
    document["spec"]["deletionStrategy"] = {"onSuccess": {"policy": "DeleteCluster"}}
    assert problems(document, catalog) == [
        "spec.deletionStrategy: deletionStrategy requires either BOTH onSuccess and onFailure, OR the "
        "deletionRules field (cannot be empty)"
    ]
    document["spec"]["deletionStrategy"] = {
        "onSuccess": {"policy": "DeleteCluster"},
        "onFailure": {"policy": "DeleteNone"},
        "deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}],
    }
    assert len(problems(document, catalog)) == 1
    document["spec"]["deletionStrategy"] = {
        "deletionRules": [
            {
                "policy": "DeleteCluster",
                "condition": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Failed"},
            }
        ]
    }
    assert problems(document, catalog) == [
        "spec.deletionStrategy.deletionRules[0].condition: JobStatus and JobDeploymentStatus cannot be used "
        "together within the same deletion condition."
    ]
    document["spec"]["deletionStrategy"]["deletionRules"][0]["condition"] = {"jobStatus": "SUCCEEDED"}
    document["spec"]["managedBy"] = "ray.io/kuberay-operator"
    assert problems(document, catalog) == []
    document["spec"]["managedBy"] = "someone-else"
    assert problems(document, catalog) == [
        "spec.managedBy: the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'"
    ]


def test_every_crd_rule_is_in_the_supported_cel_subset(catalog: CrdCatalog) -> None:
    rules = {rule for schema in catalog.schemas.values() for rule in iter_rules(schema)}
    assert len(rules) >= 5
    for rule in rules:
        compile_rule(rule)
    assert {compile_rule(rule).transition for rule in rules} == {True, False}


def test_catalog_has_the_four_kinds(catalog: CrdCatalog) -> None:
    assert catalog.kinds() == ["RayCluster", "RayCronJob", "RayJob", "RayService"]
    assert catalog.schema_for("ray.io/v1", "RayCronJob") is not None


# Synthetic schemas: the semantics without the CRDs.
MAP_SCHEMA = {
    "type": "object",
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"n": {"type": "integer"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "size": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "count": {"type": "integer", "minimum": 1},
        "maybe": {"type": "string", "nullable": True},
    },
}


def test_maps_preserved_fields_sets_enums_and_bounds() -> None:
    validator = StructuralValidator()
    good = {
        "labels": {"x": "1"},
        "free": {"n": 1, "anything": [1, {"deep": True}]},
        "tags": ["a", "b"],
        "size": "1Gi",
        "mode": "a",
        "count": 1,
        "maybe": None,
    }
    assert validator.validate(good, MAP_SCHEMA, "") == []
    bad = copy.deepcopy(good)
    bad.update(
        {"labels": {"x": 1}, "free": {"n": "one"}, "tags": ["a", "a"], "size": True, "mode": "c", "count": 0}
    )
    found = validator.validate(bad, MAP_SCHEMA, "")
    assert sorted(p.split(":")[0] for p in found) == ["count", "free.n", "labels.x", "mode", "size", "tags"]
    assert validator.tally.nodes > 10


def test_cel_subset_evaluates_and_refuses_what_it_does_not_know() -> None:
    rule = compile_rule("!(has(self.a) && has(self.b)) && (self.kind in ['x', 'y'] || self.kind == 'z')")
    assert rule.holds({"a": 1, "kind": "x"})
    assert not rule.holds({"a": 1, "b": 2, "kind": "x"})
    assert not rule.holds({"kind": "w"})
    assert compile_rule("self == oldSelf").transition
    for unsupported in ("self.size() > 1", "self.a + 1 == 2", "unknown.x == 1"):
        with pytest.raises(CelUnsupported):
            compile_rule(unsupported)
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.a.size() > 0"}],
    }
    assert "cannot evaluate rule" in StructuralValidator().validate({"a": 1}, schema, "")[0]
