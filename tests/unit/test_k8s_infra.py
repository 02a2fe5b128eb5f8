"""The image, the pins and the deployment docs agree with the config the manifests come from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.config import load_config
from cluster.kubernetes_config import KubernetesConfig

pytestmark = pytest.mark.unit

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "infra" / "image"


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pins(requirements: list[str]) -> dict[str, str]:
    found = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement)
        if match:
            found[match.group(1).lower()] = match.group(3)
    return found


def test_image_builds_on_the_ray_gpu_image_of_the_manifests_ray_version() -> None:
    dockerfile = (IMAGE / "Dockerfile").read_text(encoding="utf-8")
    ray_version = KubernetesConfig().ray_version
    assert re.search(rf"^ARG RAY_VERSION={re.escape(ray_version)}$", dockerfile, re.M)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-gpu$", dockerfile, re.M)
    assert pins(pyproject()["project"]["dependencies"])["ray"] == ray_version
    assert 'pip install --no-cache-dir --constraint /tmp/qwen-constraints.txt ".[gpu]"' in dockerfile
    assert "pip check" in dockerfile


def test_constraints_pin_what_the_gpu_extra_pins() -> None:
    constraints = pins((IMAGE / "constraints.txt").read_text(encoding="utf-8").splitlines())
    extra = pins(pyproject()["project"]["optional-dependencies"]["gpu"])
    assert extra and all(constraints[name] == version for name, version in extra.items())
    assert constraints["ray"] == KubernetesConfig().ray_version
    assert re.match(r"^5\.(1[6-9]|20)\.", constraints["transformers"]), (
        "vLLM 0.33 needs transformers >=5.16.1,<5.21"
    )


def test_image_readme_says_how_to_build_and_push() -> None:
    readme = (IMAGE / "README.md").read_text(encoding="utf-8")
    assert "docker build -f infra/image/Dockerfile" in readme and "docker push" in readme
    assert "kubernetes:\n  image:" in readme


def test_deploy_docs_name_the_operator_gate_secrets_and_commands() -> None:
    readme = (REPO / "infra" / "README.md").read_text(encoding="utf-8")
    k8s = load_config(profile="gpu").kubernetes
    assert "## Deploy on Kubernetes" in readme
    assert f"--version {k8s.kuberay_version}" in readme and "RayCronJob=true" in readme
    for secret in k8s.secret_env:
        assert f"create secret generic {secret.secret}" in readme and secret.key in readme
    for command in (
        "qwen-cluster render k8s --profile gpu --out infra/kuberay/",
        "--check",
        "kubectl apply -k infra/kuberay/prod",
        "kubectl -n qwen create -f infra/kuberay/prod/ray-job.nightly-batch.yaml",
    ):
        assert command in readme
    assert "### 5. Scale" in readme and "### 6. Upgrade" in readme
    assert "overlays/" not in readme and "kuberay/base" not in readme
    for validator in ("jsonschema", "cel-python", "kubernetes-validate", "kubectl kustomize"):
        assert validator in readme
