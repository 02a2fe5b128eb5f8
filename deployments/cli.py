"""`qwen-cluster up | status | demo-models`: serve the API on a local (or existing) Ray cluster."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from cluster.cli import EXIT_FAILURE, EXIT_OK, add_config_arguments, config_from_args

log = logging.getLogger("qwen_cluster")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `up`, `status` and `demo-models` to a `qwen-cluster` parser."""
    up = subparsers.add_parser("up", help="start local Ray and serve the OpenAI API in the foreground")
    add_config_arguments(up)
    up.add_argument("--port", type=int, help="HTTP port (overrides serving.port)")
    up.add_argument("--host", help="HTTP bind address (overrides serving.host)")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the app to be ready")
    up.set_defaults(handler=run_up)

    status = subparsers.add_parser("status", help="show deployments, replicas and the endpoint")
    add_config_arguments(status)
    status.add_argument("--address", default="auto", help="Ray address (default: the local cluster)")
    status.add_argument("--port", type=int, help="HTTP port the app serves on")
    status.set_defaults(handler=run_status)

    demo = subparsers.add_parser("demo-models", help="generate the random-weight demo checkpoints (offline)")
    add_config_arguments(demo)
    demo.add_argument("--cache-dir", type=Path, help="where to write them (default: the config's cache_dir)")
    demo.add_argument("--force", action="store_true", help="regenerate even when current")
    demo.set_defaults(handler=run_demo_models)


def run_up(args: argparse.Namespace) -> int:
    """Handle `up`: start Ray and Serve, serve until SIGINT/SIGTERM, then tear both down."""
    from cluster import local
    from cluster.local_haproxy import PortInUseError
    from deployments.app import build_app_from_config
    from deployments.engines.demo_models import ensure_demo_models

    config = config_from_args(args)
    if args.port is not None:
        config.serving.port = args.port
    if args.host is not None:
        config.serving.host = args.host
    if config.uses_random_weights:
        log.warning("profile %s serves RANDOM-WEIGHT demo checkpoints: answers are noise", config.profile)
        try:
            ensure_demo_models(config.cache_dir, [m.size for m in config.enabled_models() if m.random_weights])
        except OSError as error:
            print(f"qwen-cluster up: {cache_error(config.cache_dir, error)}", file=sys.stderr)
            return EXIT_FAILURE
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()

    # Both signals set the event explicitly: a shell starts background jobs with SIGINT ignored, and
    # a container runtime stops with SIGTERM; either way Serve and Ray must be torn down. ray.init
    # installs its own SIGTERM handler in the driver (which aborts), so ours go in again after it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        local.start_ray(config)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        local.deploy(config, build_app_from_config(config), blocking_timeout_s=args.timeout)
        models = ", ".join(m.public_name for m in config.enabled_models())
        print(f"serving {models} (and `auto`) at {local.endpoint(config)}/v1  (Ctrl-C to stop)", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    except PortInUseError as error:
        print(f"qwen-cluster up: {error}; serve elsewhere with --port PORT", file=sys.stderr)
        return EXIT_FAILURE
    except local.DeployFailedError as error:
        print(f"qwen-cluster up: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        print("shutting down Serve and Ray...", flush=True)
        local.shutdown(config)
    return EXIT_OK


def cache_error(cache_dir: Path, error: OSError) -> str:
    """One line for demo checkpoints that cannot be written where the config puts them."""
    return (
        f"cannot write the demo checkpoints under {cache_dir} ({type(error).__name__}: {error}); "
        "set QWEN_CLUSTER_CACHE or the config's cache_dir to a writable folder"
    )


def run_status(args: argparse.Namespace) -> int:
    """Handle `status`: print deployments, replica states and the endpoint of a running cluster."""
    import ray

    from cluster import local

    config = config_from_args(args)
    if args.port is not None:
        config.serving.port = args.port
    try:
        ray.init(
            address=args.address, namespace=config.ray.namespace, log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except ConnectionError as error:
        print(f"no Ray cluster is running at {args.address}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        print(local.describe_status(config.serving.app_name))
        print(f"endpoint: {local.endpoint(config)}/v1")
    finally:
        ray.shutdown()
    return EXIT_OK


def run_demo_models(args: argparse.Namespace) -> int:
    """Handle `demo-models`: generate the random-weight checkpoints into the cache."""
    from deployments.engines.demo_models import ensure_demo_models

    config = config_from_args(args)
    cache_dir = args.cache_dir or config.cache_dir
    try:
        paths = ensure_demo_models(cache_dir, force=args.force)
    except OSError as error:
        print(f"qwen-cluster demo-models: {cache_error(cache_dir, error)} (or pass --cache-dir)", file=sys.stderr)
        return EXIT_FAILURE
    for size, path in paths.items():
        print(f"{size}: {path}  (RANDOM WEIGHTS)")
    return EXIT_OK
