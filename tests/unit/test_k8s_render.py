"""Rendering: committed bytes, machine independence, and what each manifest must say."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.config import ClusterConfig, load_config
from cluster.k8s.batch_jobs import batch_entrypoint
from cluster.k8s.render import render_all
from cluster.k8s.serve_config import SERVE_APP_SECTIONS
from cluster.shadow_config import RUNTIME_FIELDS, apply_user_config, ingress_user_config
from deployments.app_args import parse_app_args

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
BASE = "kuberay/default"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render_all(load_config(profile="gpu"))


def docs(files: dict[str, str], name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files[f"{BASE}/{name}"]) if d]


def ray_service(files: dict[str, str]) -> dict:
    return docs(files, "ray-service.qwen.yaml")[0]


def test_committed_files_are_a_fresh_rendering(files: dict[str, str]) -> None:
    stale = [
        path
        for path, text in files.items()
        if not (INFRA / path).is_file() or (INFRA / path).read_text(encoding="utf-8") != text
    ]
    assert stale == [], "re-run: qwen-cluster render k8s --profile gpu --out infra/kuberay/"
    on_disk = {str(p.relative_to(INFRA)) for p in (INFRA / "kuberay").rglob("*") if p.is_file()}
    assert on_disk == {path for path in files if path.startswith("kuberay/")}


def test_rendering_does_not_depend_on_this_machine(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QWEN_CLUSTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert render_all(load_config(profile="gpu")) == files


def test_libyaml_and_pure_python_emitters_give_the_same_bytes() -> None:
    from cluster.k8s import yamlio
    from cluster.k8s.render import manifest_documents

    class PurePython(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True

    PurePython.add_representer(str, yamlio._represent_str)
    options = {"sort_keys": False, "default_flow_style": False, "width": 4096, "allow_unicode": True}
    for documents in manifest_documents(load_config(profile="gpu")).values():
        for document in documents:
            assert yamlio.dump_yaml(document) == yaml.dump(document, Dumper=PurePython, **options)


def serve_config(files: dict[str, str]) -> dict:
    return yaml.safe_load(ray_service(files)["spec"]["serveConfigV2"])


def test_serve_args_carry_only_what_the_app_reads_and_parse_with_the_app_model(files: dict[str, str]) -> None:
    app = serve_config(files)["applications"][0]
    assert app["import_path"] == "deployments.app:build_app"
    assert set(app["args"]) == {"config"} and list(app["args"]["config"]) == list(SERVE_APP_SECTIONS)
    assert not {"batch", "ray", "kubernetes"} & set(app["args"]["config"])
    parsed = parse_app_args(app["args"])
    assert str(parsed.cache_dir) == "/home/ray/.cache/qwen-cluster"
    config = load_config(profile="gpu")
    # The shadow's run-time fields are in the ingress's user_config instead (next test).
    parsed.router.shadow = apply_user_config(parsed.router.shadow, ingress_user_config(config.router.shadow))
    expected = config.model_dump(mode="json", include=set(SERVE_APP_SECTIONS) - {"cache_dir"})
    assert parsed.model_dump(mode="json", include=set(SERVE_APP_SECTIONS) - {"cache_dir"}) == expected


def test_the_ingress_override_carries_the_run_time_shadow_settings_and_only_them(
    files: dict[str, str],
) -> None:
    config = load_config(profile="gpu")
    app = serve_config(files)["applications"][0]
    ingress = {d["name"]: d for d in app["deployments"]}["openai-ingress"]
    assert set(ingress) == {"name", "user_config"}
    assert ingress["user_config"] == ingress_user_config(config.router.shadow)
    assert set(ingress["user_config"]["shadow"]) == set(RUNTIME_FIELDS)
    assert not set(RUNTIME_FIELDS) & set(app["args"]["config"]["router"]["shadow"])
    # What an ingress replica runs: the args' fixed fields, then Serve's reconfigure(user_config).
    args_shadow = parse_app_args(app["args"]).router.shadow
    assert apply_user_config(args_shadow, ingress["user_config"]) == config.router.shadow


def test_switching_shadow_answers_reconfigures_the_ingress_without_redeploying(files: dict[str, str]) -> None:
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    data = load_config(profile="gpu").model_dump()
    assert data["router"]["shadow"]["enabled"]
    data["router"]["shadow"] |= {"enabled": False, "sample_rate": 0.05, "store_text": True}
    changed = render_all(ClusterConfig.model_validate(data))
    before, after = serve_config(files), serve_config(changed)
    # Nor a new Ray cluster: KubeRay rolls one out for changes outside serveConfigV2.
    assert {**ray_service(changed)["spec"], "serveConfigV2": ""} == {
        **ray_service(files)["spec"],
        "serveConfigV2": "",
    }
    old_app, new_app = before["applications"][0], after["applications"][0]
    # Serve rebuilds the app, restarting every replica, exactly when its code version changes.
    assert get_app_code_version(ServeApplicationSchema.model_validate(old_app)) == get_app_code_version(
        ServeApplicationSchema.model_validate(new_app)
    )
    old_deployments = {d["name"]: d for d in old_app["deployments"]}
    new_deployments = {d["name"]: d for d in new_app["deployments"]}
    assert [name for name in new_deployments if new_deployments[name] != old_deployments[name]] == [
        "openai-ingress"
    ]
    assert new_deployments["openai-ingress"]["user_config"]["shadow"]["enabled"] is False
    assert {**before, "applications": []} == {**after, "applications": []}


def test_changing_batch_settings_does_not_redeploy_the_serve_app(files: dict[str, str]) -> None:
    data = load_config(profile="gpu").model_dump()
    assert data["batch"]["default_size"] != "2b"
    data["batch"]["default_size"] = "2b"
    data["batch"]["pdf_dpi"] += 1
    changed = render_all(ClusterConfig.model_validate(data))
    assert (
        changed[f"{BASE}/configmap.qwen-cluster-config.yaml"]
        != files[f"{BASE}/configmap.qwen-cluster-config.yaml"]
    )
    for environment in ("default", "dev", "prod"):
        path = f"kuberay/{environment}/ray-service.qwen.yaml"
        assert changed[path] == files[path], f"{path}: a batch.* change must leave serveConfigV2 alone"


def test_serve_config_passes_ray_serves_own_schema(files: dict[str, str]) -> None:
    from ray.serve import schema

    deploy = schema.ServeDeploySchema.model_validate(serve_config(files))
    assert deploy.http_options.host == "0.0.0.0" and deploy.http_options.port == 8000


def test_each_size_is_pinned_to_its_group_with_its_own_autoscaling(files: dict[str, str]) -> None:
    config = load_config(profile="gpu")
    overrides = {d["name"]: d for d in serve_config(files)["applications"][0]["deployments"]}
    assert list(overrides) == ["model-0_8b", "model-2b", "model-4b", "model-9b", "openai-ingress"]
    groups = {g["groupName"]: g for g in ray_service(files)["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert list(groups) == ["gpu-0-8b-2b", "gpu-4b", "gpu-9b", "cpu"]
    for model in config.models:
        override = overrides[model.deployment_name]
        assert override["autoscaling_config"] == model.deployment.autoscaling_config.to_serve()
        actor = override["ray_actor_options"]
        assert (actor["num_cpus"], actor["num_gpus"]) == (
            model.deployment.num_cpus,
            model.deployment.num_gpus,
        )
        ((resource, amount),) = actor["resources"].items()
        owners = [name for name, g in groups.items() if resource in g["resources"]]
        assert len(owners) == 1 and amount == model.deployment.num_gpus
    assert (
        overrides["model-0_8b"]["ray_actor_options"]["resources"]
        == overrides["model-2b"]["ray_actor_options"]["resources"]
    )
    assert (
        groups["gpu-4b"]["resources"]["GPU"] == "1" and groups["gpu-4b"]["template"]["spec"]["nodeSelector"]
    )


def test_ray_service_cluster_settings(files: dict[str, str]) -> None:
    spec = ray_service(files)["spec"]
    cluster = spec["rayClusterConfig"]
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["version"] == "v2"
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        assert pod["restartPolicy"] == "Never"
        assert {"readinessProbe", "livenessProbe"} <= set(container)
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        assert secrets == {
            "HF_TOKEN": "hf-token",
            "AWS_ACCESS_KEY_ID": "s3-credentials",
            "AWS_SECRET_ACCESS_KEY": "s3-credentials",
            "AWS_ENDPOINT_URL": "s3-credentials",
            "QWEN_API_KEYS": "qwen-api-keys",
        }
        assert {"name": "serve", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
    for worker in cluster["workerGroupSpecs"]:
        readiness = " ".join(worker["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"])
        assert "localhost:8000/-/healthz" in readiness and "local_raylet_healthz" in readiness
        assert worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]


def test_one_job_spec_for_the_rayjob_the_raycronjob_and_the_plain_cronjob(files: dict[str, str]) -> None:
    job = docs(files, "ray-job.nightly-batch.yaml")[0]
    cron = docs(files, "ray-cronjob.nightly-batch.yaml")[0]
    plain = {d["kind"]: d for d in docs(files, "cronjob.nightly-batch.yaml")}
    template = yaml.safe_load(plain["ConfigMap"]["data"]["ray-job.yaml"])
    assert job["metadata"]["generateName"] == "qwen-nightly-batch-" and "name" not in job["metadata"]
    assert cron["spec"]["jobTemplate"] == job["spec"] == template["spec"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (
        600,
        21600,
        1,
    )
    assert cron["spec"]["schedule"] == "0 2 * * *" and cron["spec"]["timeZone"] == "Etc/UTC"
    assert all(g["minReplicas"] == 0 for g in spec["rayClusterSpec"]["workerGroupSpecs"])
    cron_job = plain["CronJob"]["spec"]
    assert cron_job["schedule"] == cron["spec"]["schedule"] and cron_job["concurrencyPolicy"] == "Forbid"
    pod = cron_job["jobTemplate"]["spec"]["template"]["spec"]
    assert (
        pod["serviceAccountName"]
        == plain["RoleBinding"]["subjects"][0]["name"]
        == plain["ServiceAccount"]["metadata"]["name"]
    )
    assert pod["containers"][0]["command"][:3] == ["kubectl", "create", "-f"]
    assert plain["Role"]["rules"] == [
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list"]}
    ]


FAKE_SUBMIT = """
import shlex, subprocess, sys
# `ray job submit ... -- ENTRYPOINT`: Ray re-joins the words after `--` and runs them with a shell.
words = sys.argv[sys.argv.index("--") + 1:]
sys.exit(subprocess.call(shlex.join(words), shell=True))
"""
FAKE_BATCH = """#!/bin/sh
printf '%s\\n' "$@" > "$ARGS_FILE"
exit "$BATCH_EXIT"
"""


@pytest.mark.parametrize(("batch_exit", "job_exit"), [(0, 0), (2, 0), (1, 1)])
def test_entrypoint_survives_the_kuberay_submitter_script(
    batch_exit: int, job_exit: int, tmp_path: Path
) -> None:
    (tmp_path / "submit.py").write_text(FAKE_SUBMIT)
    fake = tmp_path / "qwen-cluster"
    fake.write_text(FAKE_BATCH)
    fake.chmod(0o755)
    entrypoint = batch_entrypoint(load_config(profile="gpu"))
    # KubeRay pastes the entrypoint unquoted into: if ...; then ...; else ray job submit ... -- <entrypoint> ; fi
    script = (
        f"if false ; then true ; else {shlex.quote(sys.executable)} {tmp_path}/submit.py -- {entrypoint} ; fi"
    )
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "ARGS_FILE": str(tmp_path / "args"),
        "BATCH_EXIT": str(batch_exit),
    }
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == job_exit, done.stderr
    argv = (tmp_path / "args").read_text().split("\n")[:-1]
    assert argv == [
        "batch",
        "--input",
        "s3://qwen-batch/incoming/",
        "--output",
        "s3://qwen-batch/results/",
        "--task",
        "extract",
        "--config",
        "/home/ray/qwen-config/cluster.yaml",
    ]


def test_plain_entrypoint_without_the_partial_failure_wrapper() -> None:
    data = load_config(profile="gpu").model_dump()
    data["kubernetes"]["batch"]["partial_failure_ok"] = False
    data["kubernetes"]["batch"]["s3_endpoint"] = "http://minio.storage:9000"
    entrypoint = batch_entrypoint(ClusterConfig.model_validate(data))
    assert shlex.split(entrypoint)[:2] == ["qwen-cluster", "batch"]
    assert entrypoint.endswith("--s3-endpoint http://minio.storage:9000")


def test_config_map_holds_the_config_the_job_reads(files: dict[str, str]) -> None:
    config_map = docs(files, "configmap.qwen-cluster-config.yaml")[0]
    loaded = yaml.safe_load(config_map["data"]["cluster.yaml"])
    assert ClusterConfig.model_validate(loaded).cache_dir == Path("/home/ray/.cache/qwen-cluster")
    head = docs(files, "ray-job.nightly-batch.yaml")[0]["spec"]["rayClusterSpec"]["headGroupSpec"][
        "template"
    ]["spec"]
    assert {"name": "qwen-config", "configMap": {"name": "qwen-cluster-config"}} in head["volumes"]


def test_each_environment_is_a_self_contained_folder(files: dict[str, str]) -> None:
    for environment in ("default", "dev", "prod"):
        kustomization = yaml.safe_load(files[f"kuberay/{environment}/kustomization.yaml"])
        assert kustomization == {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [
                "configmap.qwen-cluster-config.yaml",
                "ray-service.qwen.yaml",
                "ray-cronjob.nightly-batch.yaml",
                "ray-cronjob.router-retrain.yaml",  # the gpu profile writes shadow labels
            ],
        }
    dev = [d for d in yaml.safe_load_all(files["kuberay/dev/ray-service.qwen.yaml"]) if d][0]
    assert dev["metadata"]["namespace"] == "qwen-dev"
    groups = dev["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["gpu-0-8b-2b", "cpu"]
    dev_cron = yaml.safe_load(files["kuberay/dev/ray-cronjob.nightly-batch.yaml"].split("---")[0])
    assert dev_cron["spec"]["suspend"] is True and dev_cron["metadata"]["namespace"] == "qwen-dev"
    # prod is the config as it is: the same manifests as default, in its own folder.
    for name in (
        "ray-service.qwen.yaml",
        "ray-cronjob.nightly-batch.yaml",
        "configmap.qwen-cluster-config.yaml",
    ):
        assert files[f"kuberay/prod/{name}"].split("\n", 1)[1] == files[f"{BASE}/{name}"].split("\n", 1)[1]


def test_scheduler_choice_and_incremental_upgrade_render() -> None:
    data = load_config(profile="gpu").model_dump()
    data["kubernetes"]["batch"]["scheduler"] = "cronjob"
    data["kubernetes"]["upgrade"] = {
        "strategy": "NewClusterWithIncrementalUpgrade",
        "gateway_class_name": "istio",
    }
    files = render_all(ClusterConfig.model_validate(data))
    for environment in ("default", "dev"):
        resources = yaml.safe_load(files[f"kuberay/{environment}/kustomization.yaml"])["resources"]
        assert resources[-1] == "cronjob.nightly-batch.yaml"
    strategy = yaml.safe_load(files[f"{BASE}/ray-service.qwen.yaml"].split("---")[0])["spec"][
        "upgradeStrategy"
    ]
    assert strategy["clusterUpgradeOptions"]["gatewayClassName"] == "istio"
    plain = {d["kind"]: d for d in yaml.safe_load_all(files["kuberay/dev/cronjob.nightly-batch.yaml"]) if d}
    assert plain["CronJob"]["spec"]["suspend"] is True
    assert plain["RoleBinding"]["subjects"][0]["namespace"] == "qwen-dev"


def test_dashboard_covers_sizes_and_routes(files: dict[str, str]) -> None:
    import json

    dashboard = json.loads((INFRA / "monitoring" / "grafana-dashboard.qwen.json").read_text(encoding="utf-8"))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in (
        "ray_qwen_requests_total",
        "ray_qwen_request_latency_s_bucket",
        "ray_qwen_time_to_first_token_s_bucket",
        "ray_qwen_tokens_total",
        "ray_qwen_routes_total",
    ):
        assert metric in exprs
    assert "sum by (model, reason)" in exprs and "sum by (model, kind)" in exprs
    monitor = yaml.safe_load(files["monitoring/podmonitor.qwen.yaml"])
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {
        "metrics",
        "as-metrics",
        "dash-metrics",
    }
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["qwen", "qwen-dev"]
