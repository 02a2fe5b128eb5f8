"""The nightly router retrain RayCronJob: rendered from the gpu profile, only with labels to read."""

import shlex

import pytest
import yaml

from cluster.config import ClusterConfig, load_config
from cluster.k8s.render import RETRAIN_CRON_JOB_FILE, render_all

pytestmark = pytest.mark.unit


def test_the_retrain_runs_router_retrain_on_the_shadow_labels_with_the_mounted_config():
    config = load_config(profile="gpu")
    files = render_all(config)
    cron = yaml.safe_load(files[f"kuberay/default/{RETRAIN_CRON_JOB_FILE}"].split("---")[0])
    argv = shlex.split(cron["spec"]["jobTemplate"]["entrypoint"])
    assert argv[:3] == ["qwen-cluster", "router", "retrain"]
    assert argv[argv.index("--labels") + 1] == config.router.shadow.output
    assert argv[argv.index("--config") + 1].endswith("cluster.yaml")
    assert cron["spec"]["schedule"] == config.kubernetes.retrain.schedule


def test_no_retrain_without_labels_or_a_calibration_to_write():
    data = load_config(profile="gpu").model_dump()
    data["router"]["reload"]["calibration_uri"] = None
    files = render_all(ClusterConfig.model_validate(data))
    assert not any(path.endswith(RETRAIN_CRON_JOB_FILE) for path in files)
    assert (
        RETRAIN_CRON_JOB_FILE not in yaml.safe_load(files["kuberay/default/kustomization.yaml"])["resources"]
    )
