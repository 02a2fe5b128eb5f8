"""The Serve environment a cluster started here gets: defaults, and the user's values kept."""

from __future__ import annotations

import os

import pytest

from cluster import local

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch):
    for key in {**local.SERVE_ENV_DEFAULTS, **local.LOCAL_SERVE_ENV_DEFAULTS}:
        # setenv first, so teardown restores the variable (or its absence) after apply_serve_env set it
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    return monkeypatch


def test_haproxy_replays_a_request_whose_ingress_closed_before_answering(clean_env):
    applied = local.apply_serve_env(local=True)

    retry_on = applied["RAY_SERVE_HAPROXY_RETRY_ON"].split()
    assert "empty-response" in retry_on
    # A connect failure is still replayed (Ray's own default), and no status code is: a 503 or 429
    # from our ingress is deliberate back-pressure, not a dead replica.
    assert "conn-failure" in retry_on
    assert not any(token.isdigit() or token == "all-retryable-errors" for token in retry_on)


def test_a_value_the_user_set_is_kept(clean_env):
    clean_env.setenv("RAY_SERVE_HAPROXY_RETRY_ON", "conn-failure")

    applied = local.apply_serve_env(local=True)

    assert applied["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure"


def test_the_short_drain_is_only_for_a_cluster_started_here(clean_env):
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S" not in local.apply_serve_env(local=False)
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S" in local.apply_serve_env(local=True)


def test_serves_control_loop_is_slowed_only_for_a_cluster_started_here(clean_env):
    # An attached cluster's controller is not ours to tune.
    local.apply_serve_env(local=False)
    assert "RAY_SERVE_CONTROL_LOOP_INTERVAL_S" not in os.environ

    assert local.apply_serve_env(local=True)["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"


def test_a_failed_deployment_is_reported_with_the_error_its_replicas_raised(monkeypatch):
    from types import SimpleNamespace

    from ray import serve

    message = (
        "The deployment failed to start 3 times in a row. See controller logs for details. Error:\n"
        'Traceback (most recent call last):\n  File "engine.py", line 9, in load\n'
        "    raise EngineStartError(text)\n"
        "deployments.engines.base.EngineStartError: checkpoint folder /ckpt does not exist on this node\n"
    )
    failed = SimpleNamespace(status=SimpleNamespace(value="DEPLOY_FAILED"), message=message)
    healthy = SimpleNamespace(status=SimpleNamespace(value="HEALTHY"), message="")
    status = SimpleNamespace(
        applications={"qwen": SimpleNamespace(deployments={"model-0_8b": failed, "ingress": healthy})}
    )
    monkeypatch.setattr(serve, "status", lambda: status)

    report = local.failed_deployments("qwen")
    lines = report.splitlines()
    assert lines[0] == "  model-0_8b: DEPLOY_FAILED" and "ingress" not in report
    assert lines[1].startswith("    The deployment failed to start 3 times")
    assert (
        lines[-1]
        == "    deployments.engines.base.EngineStartError: checkpoint folder /ckpt does not exist on this node"
    )
    assert len(lines) == 3  # the first line of Serve's message and its last
    assert local.failed_deployments("another-app") == ""
