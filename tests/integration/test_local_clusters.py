"""Two local clusters on one machine: `qwen-cluster up --port A` and `--port B` both serve, and a
cluster killed with SIGKILL (its HAProxy left running) can be started again on its port.

Each cluster is a real `qwen-cluster up` in its own session, serving the demo 0.8b size alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from cluster import local_haproxy
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 240


def write_config(demo_config, port: int, folder: Path) -> Path:
    """The demo profile cut to the 0.8b size, router off, serving on `port`."""
    data = demo_config.model_dump(mode="json")
    data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
    data["router"]["enabled"] = False
    data["serving"]["port"] = port
    path = folder / f"cluster-{port}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start(config_path: Path, log_path: Path) -> subprocess.Popen:
    """`qwen-cluster up` in a session of its own (its Ray processes share its process group)."""
    # Ray's own start-up wait is 60 s; clusters starting side by side on 2 cores can take longer.
    env = {**os.environ, "RAY_raylet_start_wait_time_s": "180"}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "up", "--config", str(config_path), "--timeout", "300"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def chat(port: int) -> int:
    body = json.dumps({"model": "qwen3.5-0.8b", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 2}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def wait_ready(process: subprocess.Popen, port: int, log_path: Path) -> float:
    """Seconds until `process` says it serves on `port` and a chat completion there succeeds; fails
    with the log's tail otherwise.

    A chat alone is not enough: right after a cluster on the port was killed, what is left of it (its
    HAProxy and replicas outlive the raylet for a few seconds) can still answer, before this process
    has even started Ray.
    """
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            pytest.fail(f"up --port {port} exited {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if f":{port}/v1  (Ctrl-C to stop)" in log_path.read_text() and chat(port) == 200:
                return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    pytest.fail(f"up --port {port} not ready after {READY_TIMEOUT_S} s: {log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C (Serve and Ray shut down), then SIGKILL of the whole process group if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_two_clusters_serve_side_by_side_and_a_killed_one_starts_again(demo_config, tmp_path):
    port_a = free_port()
    port_b = free_port(exclude=[port_a])
    config_a, config_b = (write_config(demo_config, port, tmp_path) for port in (port_a, port_b))
    processes = []
    try:
        a = start(config_a, tmp_path / "a.log")
        b = start(config_b, tmp_path / "b.log")
        processes += [a, b]
        wait_ready(a, port_a, tmp_path / "a.log")
        wait_ready(b, port_b, tmp_path / "b.log")

        # As `ray stop --force` or an OOM kill would: no shutdown, and the HAProxy (the child of an
        # actor, in a process group of its own) survives with the port.
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        # The actor's worker notices its raylet is gone and exits (seconds, or tens of seconds on a
        # loaded machine). Its HAProxy then either stays, reparented and holding the port (what `up`
        # must clean up), or exits with it (seen on fresh CI machines); never is it still held by a
        # live worker of the dead cluster.
        deadline = time.monotonic() + 120
        while True:
            ours = local_haproxy.find_ours(local_haproxy.state_dir(port_a))
            if all(stale for _, stale in ours):
                break
            held = [(proc.pid, proc.parent() and proc.parent().cmdline()[:1]) for proc, _ in ours]
            assert time.monotonic() < deadline, f"a worker of the killed cluster still holds HAProxy: {held}"
            time.sleep(0.5)
        left_behind = bool(ours)
        assert chat(port_b) == 200

        again = start(config_a, tmp_path / "a-again.log")
        processes.append(again)
        wait_ready(again, port_a, tmp_path / "a-again.log")
        if left_behind:
            assert "stopped HAProxy left by a cluster" in (tmp_path / "a-again.log").read_text()
        assert chat(port_b) == 200
    finally:
        for process in processes:
            stop(process)
        for port in (port_a, port_b):
            local_haproxy.stop_stale(port)
            local_haproxy.remove_state(port)
    for port in (port_a, port_b):
        assert not local_haproxy.find_stale(local_haproxy.state_dir(port))
        assert not local_haproxy.state_dir(port).exists()
