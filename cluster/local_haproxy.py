"""The HAProxy of a cluster started here: ports and files of its own, and a stale one stopped first.

Ray 2.60's HAProxy (`RAY_SERVE_ENABLE_HA_PROXY=1`) binds the serving port and two more, the
Prometheus frontend (`RAY_SERVE_HAPROXY_METRICS_PORT`, 9101) and the stats page
(`RAY_SERVE_HAPROXY_STATS_PORT`, 8404), whatever the serving port; its files go under
`/tmp/haproxy-serve/<node id>/`. Beside it Serve starts a fallback Python proxy on 127.0.0.1:8500
(gRPC 9500) with SO_REUSEPORT, so a second cluster binds the same port without an error and the two
clusters' fallback traffic is shared between them. Ray reads all of these from the environment of its
actors, so a local cluster sets them before Ray starts: the four ports are chosen free, and the files
go to a folder named by this user and the serving port (`/tmp/qwen-haproxy-<uid>-<port>/<node id>/`).

HAProxy runs as a child process of the HAProxyManager actor. When the cluster dies without shutting
Serve down (`kill -9` of `qwen-cluster up`, `ray stop --force`), nothing stops it: it is reparented
and keeps the serving port, so the next start on that port fails to bind. Such a process is ours
when its `-f` config file lies under this port's folder (no other program puts a config there) and
stale when its parent is no longer a Ray worker (`ray::...`); only those are stopped.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STATS_PORT_ENV = "RAY_SERVE_HAPROXY_STATS_PORT"
METRICS_PORT_ENV = "RAY_SERVE_HAPROXY_METRICS_PORT"
# Ports every local cluster would otherwise share: chosen free for each one.
PORT_ENVS = (
    METRICS_PORT_ENV,
    STATS_PORT_ENV,
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)
# Ray appends the node id (56 hex characters) to each folder; the admin socket's path must stay under
# the 108-byte limit of a Unix socket address, so the root is short and fixed.
STATE_ROOT = Path("/tmp")
# Where Ray puts each file, relative to the folder (Ray adds `<node id>/` before the file name).
FILE_ENVS = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
STATE_BASE_ENV = "RAY_SERVE_HAPROXY_SERVER_STATE_BASE"
# The serving port the variables above were chosen for by `haproxy_env` (so they are ours, not the user's).
OWNER_ENV = "QWEN_CLUSTER_HAPROXY_ENV_PORT"
OWNED_ENVS = (*FILE_ENVS, STATE_BASE_ENV, *PORT_ENVS)
# A Ray worker's process title; HAProxy's live parent is the HAProxyManager actor's worker.
RAY_WORKER_PREFIX = "ray::"


def state_dir(serving_port: int, root: Path = STATE_ROOT) -> Path:
    """The folder of the HAProxy that serves `serving_port` for this user."""
    return root / f"qwen-haproxy-{os.getuid()}-{serving_port}"


# Where chosen ports come from: above Ray's worker ports (10002-19999 by default) and below the
# kernel's ephemeral range, from which every port bound to 0 and every outgoing connection takes
# one. A port picked there while Ray starts its own processes was taken by one of them before Serve's
# proxy bound it ("Failed to bind to address", seen once in the kill -9 restart test).
CHOSEN_PORTS = (20000, 32768)
# Serve's direct ingress (on whenever HAProxy is) binds each replica's HTTP port from a range of its
# own, every cluster from the low end up: a port chosen there may be a replica's of this or another
# cluster by the time its own process binds it. (Its gRPC range, 40000-41000, is above CHOSEN_PORTS.)
DIRECT_INGRESS_MIN_ENV, DIRECT_INGRESS_MIN_DEFAULT = "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", 30000
DIRECT_INGRESS_MAX_ENV, DIRECT_INGRESS_MAX_DEFAULT = "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", 31000


def direct_ingress_ports(environ: dict[str, str] | None = None) -> range:
    """The ports Serve's direct ingress gives replicas (its variables, else its defaults)."""
    environ = os.environ if environ is None else environ
    try:
        low = int(environ.get(DIRECT_INGRESS_MIN_ENV, DIRECT_INGRESS_MIN_DEFAULT))
        high = int(environ.get(DIRECT_INGRESS_MAX_ENV, DIRECT_INGRESS_MAX_DEFAULT))
    except ValueError:  # Serve itself would fail to start on such a value
        low, high = DIRECT_INGRESS_MIN_DEFAULT, DIRECT_INGRESS_MAX_DEFAULT
    return range(low, high + 1)


def ephemeral_floor(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The lowest port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return CHOSEN_PORTS[1]


def port_is_free(port: int, host: str = "") -> bool:
    """Whether a TCP socket can bind `port` on `host` (every interface by default) right now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "", tries: int = 64, exclude: Iterable[int] = ()) -> int:
    """A TCP port nobody listens on right now (on every interface, as HAProxy binds these two), from
    `CHOSEN_PORTS` below the ephemeral range, outside Serve's direct-ingress ports and not in
    `exclude`; a kernel-chosen one if none of `tries` is free."""
    low, high = CHOSEN_PORTS[0], min(CHOSEN_PORTS[1], ephemeral_floor())
    reserved = direct_ingress_ports()
    candidates = [port for port in range(low, high) if port not in reserved]
    taken = set(exclude)
    for port in random.sample(candidates, min(tries, len(candidates))):
        if port not in taken and port_is_free(port, host):
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def haproxy_env(
    serving_port: int, environ: dict[str, str] | None = None, root: Path = STATE_ROOT
) -> dict[str, str]:
    """Ray's HAProxy variables for a local cluster serving on `serving_port`, and `OWNER_ENV`.

    The files go to `state_dir(serving_port)`; the ports of `PORT_ENVS` are chosen free. A variable
    the user set in `environ` (default: this process's environment) keeps its value, as everywhere
    in `apply_serve_env`. Values an earlier cluster of ours put there are not the user's: `OWNER_ENV`
    names the serving port they were chosen for, and every process started from that one (a test
    or bench spawning `qwen-cluster up`) inherits them, so for another port they are chosen again.
    The caller sets every returned variable (not only missing ones).
    """
    environ = os.environ if environ is None else environ
    owner = environ.get(OWNER_ENV)
    if owner is not None and owner != str(serving_port):
        environ = {key: value for key, value in environ.items() if key not in OWNED_ENVS}
    folder = state_dir(serving_port, root)
    wanted = {key: str(folder / name) for key, name in FILE_ENVS.items()}
    wanted[STATE_BASE_ENV] = str(folder)
    chosen_ports: list[int] = []
    for key in PORT_ENVS:
        value = environ.get(key)
        if not value:
            chosen_ports.append(free_port(exclude=chosen_ports))
            value = str(chosen_ports[-1])
        wanted[key] = value
    chosen = {key: environ.get(key, value) for key, value in wanted.items()}
    chosen[OWNER_ENV] = str(serving_port)
    return chosen


def config_path(cmdline: Sequence[str]) -> str | None:
    """The config file an `haproxy` command line names with `-f`, or None if it is not HAProxy's."""
    if not cmdline or Path(cmdline[0]).name != "haproxy":
        return None
    for flag, value in zip(cmdline, cmdline[1:], strict=False):
        if flag == "-f":
            return value
    return None


def is_ours(cmdline: Sequence[str], folder: Path) -> bool:
    """Whether the process is an HAProxy whose config file lies under `folder` (this port's)."""
    path = config_path(cmdline)
    return path is not None and Path(path).parent.parent == folder


def is_stale(cmdline: Sequence[str], parent_cmdline: Sequence[str] | None, folder: Path) -> bool:
    """An HAProxy of ours whose Ray worker parent is gone (reparented to init or a subreaper)."""
    if not is_ours(cmdline, folder):
        return False
    parent_alive = bool(parent_cmdline) and parent_cmdline[0].startswith(RAY_WORKER_PREFIX)
    return not parent_alive


def find_ours(folder: Path) -> list[tuple]:
    """(psutil `Process`, stale) for every HAProxy of `folder` running now."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if not is_ours(cmdline, folder):
            continue
        try:
            parent = proc.parent()
            parent_cmdline = parent.cmdline() if parent is not None else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            parent_cmdline = None
        found.append((proc, is_stale(cmdline, parent_cmdline, folder)))
    return found


def find_stale(folder: Path) -> list:
    """The stale HAProxy processes of `folder` running now (psutil `Process` objects)."""
    return [proc for proc, stale in find_ours(folder) if stale]


def stop(processes: Iterable, timeout_s: float = 5.0) -> list[int]:
    """Terminate `processes` (SIGTERM, then SIGKILL after `timeout_s`); returns the pids stopped.

    psutil checks each process's start time before signalling, so a pid reused since it was found is
    left alone.
    """
    import psutil

    processes = list(processes)
    stopped = []
    for proc in processes:
        try:
            proc.terminate()
            stopped.append(proc.pid)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=timeout_s)
    return stopped


def stop_stale(serving_port: int, root: Path = STATE_ROOT, settle_s: float = 10.0) -> list[int]:
    """Stop what a crashed cluster of ours left on `serving_port`; returns the pids stopped.

    Right after a cluster is killed its HAProxyManager worker can outlive the raylet for a moment, so
    its HAProxy still looks owned; such an HAProxy is watched for up to `settle_s` seconds. One whose
    Ray parent stays alive belongs to a running cluster and is left alone.
    """
    import time

    folder = state_dir(serving_port, root)
    deadline = time.monotonic() + settle_s
    ours = find_ours(folder)
    while any(not stale for _, stale in ours) and time.monotonic() < deadline:
        time.sleep(0.5)
        ours = find_ours(folder)
    stale = [proc for proc, is_stale_now in ours if is_stale_now]
    if not stale:
        return []
    pids = stop(stale)
    log.warning(
        "stopped HAProxy left by a cluster that did not shut down (pids %s, config under %s)", pids, folder
    )
    return pids


def remove_state(serving_port: int, root: Path = STATE_ROOT) -> bool:
    """Delete this port's folder once no HAProxy of ours runs from it (after a shutdown); returns
    whether it was removed. Ray leaves its config, sockets and logs behind, one folder per port."""
    import shutil

    import psutil

    folder = state_dir(serving_port, root)
    if not folder.exists():
        return False
    for proc in psutil.process_iter(["cmdline"]):
        if is_ours(proc.info.get("cmdline") or [], folder):
            return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


class PortInUseError(RuntimeError):
    """The serving port is held by another process: the user's to resolve (another `--port`, or stop
    that process), so the CLI says it in one line rather than with a traceback."""


def check_port_free(host: str, port: int) -> None:
    """Raise if something listens on `host:port` already (before Ray spends 20 s starting).

    Raises:
        PortInUseError: naming the port, and the process holding it where this user may see it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # HAProxy binds with SO_REUSEADDR too: a port in TIME_WAIT is free for it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as error:
            reason = error.strerror
    raise PortInUseError(f"serving port {host}:{port} is not free ({reason}){_holder(port)}")


def _holder(port: int) -> str:
    import psutil

    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                return f": held by pid {conn.pid} ({' '.join(proc.cmdline())[:200]})"
    except (psutil.Error, OSError):
        pass
    return ""
