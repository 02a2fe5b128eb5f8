"""`qwen-cluster`: the command-line entry point.

Sub-commands from other packages register themselves through their `register(subparsers)`; they are
imported when the parser is built, so each keeps its heavy imports inside its handlers. Exit codes:
0 success, 1 failure (bad arguments or config included), 2 a batch job that wrote error rows.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from cluster.config import PROFILES, ClusterConfig, ConfigError, load_config

log = logging.getLogger("qwen_cluster")


class CliParser(argparse.ArgumentParser):
    """argparse with usage errors exiting 1: exit code 2 means "some batch rows failed"."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` / `--profile NAME`, shared by every command that reads the cluster config."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", type=Path, help="cluster config YAML file")
    group.add_argument("--profile", choices=PROFILES, help="a shipped profile (default: demo)")


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    """Load the config the arguments name."""
    return load_config(args.config, profile=args.profile)


def _cmd_up(args: argparse.Namespace) -> int:
    from cluster import local
    from cluster.demo_models import ensure_demo_models

    config = config_from_args(args)
    if args.port is not None:
        config.serving.port = args.port
    if args.host is not None:
        config.serving.host = args.host
    if config.uses_random_weights:
        log.warning("profile %s serves RANDOM-WEIGHT demo checkpoints: answers are noise", config.profile)
        ensure_demo_models(config.cache_dir, [m.size for m in config.enabled_models() if m.random_weights])
    stop = threading.Event()
    # Both signals set the event explicitly: a shell starts background jobs with SIGINT ignored, and
    # a container runtime stops with SIGTERM; either way Serve and Ray must be torn down.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        local.start_ray(config)
        local.deploy(config, blocking_timeout_s=args.timeout)
        models = ", ".join(m.public_name for m in config.enabled_models())
        print(f"serving {models} (and `auto`) at {local.endpoint(config)}/v1  (Ctrl-C to stop)", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("shutting down Serve and Ray...", flush=True)
        local.shutdown()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    import ray

    from cluster import local

    config = config_from_args(args)
    if args.port is not None:
        config.serving.port = args.port
    try:
        ray.init(address=args.address, namespace=config.ray.namespace, log_to_driver=False,
                 logging_level=logging.ERROR)
    except ConnectionError as error:
        print(f"no Ray cluster is running at {args.address}: {error}", file=sys.stderr)
        return 1
    try:
        print(local.describe_status(config.serving.app_name))
        print(f"endpoint: {local.endpoint(config)}/v1")
    finally:
        ray.shutdown()
    return 0


def _cmd_demo_models(args: argparse.Namespace) -> int:
    from cluster.demo_models import ensure_demo_models

    config = config_from_args(args)
    cache_dir = args.cache_dir or config.cache_dir
    paths = ensure_demo_models(cache_dir, force=args.force)
    for size, path in paths.items():
        print(f"{size}: {path}  (RANDOM WEIGHTS)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full `qwen-cluster` parser."""
    parser = CliParser(prog="qwen-cluster", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start local Ray and serve the OpenAI API in the foreground")
    add_config_arguments(up)
    up.add_argument("--port", type=int, help="HTTP port (overrides serving.port)")
    up.add_argument("--host", help="HTTP bind address (overrides serving.host)")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the app to be ready")
    up.set_defaults(handler=_cmd_up)

    status = commands.add_parser("status", help="show deployments, replicas and the endpoint")
    add_config_arguments(status)
    status.add_argument("--address", default="auto", help="Ray address (default: the local cluster)")
    status.add_argument("--port", type=int, help="HTTP port the app serves on")
    status.set_defaults(handler=_cmd_status)

    demo = commands.add_parser("demo-models", help="generate the random-weight demo checkpoints (offline)")
    add_config_arguments(demo)
    demo.add_argument("--cache-dir", type=Path, help="where to write them (default: the config's cache_dir)")
    demo.add_argument("--force", action="store_true", help="regenerate even when current")
    demo.set_defaults(handler=_cmd_demo_models)

    for register in _plugin_registrars():
        register(commands)
    return parser


def _plugin_registrars():
    from cluster.k8s.cli import register as register_render
    from deployments.router.cli import register as register_router
    from pipelines.cli import register as register_batch

    return [register_router, register_batch, register_render]


def main(argv: list[str] | None = None) -> int:
    """Run `qwen-cluster`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
