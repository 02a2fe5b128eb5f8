"""`qwen-cluster`: the command-line entry point, the arguments every command shares, the exit codes.

Sub-commands live with the code they drive (`deployments.cli`: up, status, demo-models;
`pipelines.router_training.cli`: router; `pipelines.cli`: batch; `cluster.k8s.cli`: render) and register
through the `qwen_cluster.commands` entry-point group (pyproject.toml), each a `register(subparsers)`
function. The root imports none of them at module level, so this package stays below the packages
that use it, and each command keeps its heavy imports inside its handler.

Exit codes, one policy for every command: 0 success; 1 failure (usage, config, a job that failed);
2 a batch job that finished but wrote error rows. argparse's own usage errors exit 2, which would read
as "some rows failed", so the parser is changed to exit 1 instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from cluster.config import PROFILES, ClusterConfig, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_ROWS_FAILED = 2
COMMAND_GROUP = "qwen_cluster.commands"


class CliParser(argparse.ArgumentParser):
    """argparse with usage errors exiting 1 (`EXIT_FAILURE`); 2 means "some batch rows failed"."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_FAILURE, f"{self.prog}: error: {message}\n")


def add_config_arguments(parser: argparse.ArgumentParser, default_profile: str | None = "demo") -> None:
    """`--config FILE` / `--profile NAME`, the one way every command names the cluster config.

    Args:
        parser: the sub-command's parser.
        default_profile: the profile used when neither is given (`render k8s` renders `gpu`); None
            for a command that has a meaning of its own without a config (`router`).
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", type=Path, help="cluster config YAML file")
    default = f" (default: {default_profile})" if default_profile else ""
    group.add_argument("--profile", choices=PROFILES, help=f"a shipped profile{default}")
    parser.set_defaults(default_profile=default_profile)


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    """Load the config that `--config` / `--profile` name (the command's default profile otherwise).

    Raises:
        ConfigError: naming the offending field.
    """
    profile = args.profile
    if args.config is None and profile is None:
        profile = getattr(args, "default_profile", "demo")
    return load_config(args.config, profile=profile)


def build_parser() -> argparse.ArgumentParser:
    """The full `qwen-cluster` parser, with every registered sub-command."""
    parser = CliParser(
        prog="qwen-cluster", description="Serve and batch-process the Qwen3.5 small family on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)
    registered = sorted(entry_points(group=COMMAND_GROUP), key=lambda entry: entry.name)
    if not registered:
        raise RuntimeError(
            f"no {COMMAND_GROUP!r} entry points: install the package (pip install -e .) so its commands register"
        )
    for entry in registered:
        entry.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `qwen-cluster`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or EXIT_OK)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
