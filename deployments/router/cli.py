"""The `router` command of `qwen-cluster`: `train`, `calibrate` and `eval`.

`register(subparsers)` adds the command; each sub-command's handler is stored as `handler` in the
parsed namespace and returns an exit status, so `cluster/cli.py` runs `args.handler(args)`. Handlers print
to stdout and raise nothing for bad input: they print the problem to stderr and return 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.catalog import SIZES, ModelSize
from cluster.config import PROFILES
from cluster.router_config import RouterConfig

USAGE_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `router train|calibrate|eval` to a `qwen-cluster` sub-command parser."""
    router = subparsers.add_parser("router", help="train, calibrate and evaluate the difficulty router")
    commands = router.add_subparsers(dest="router_command", required=True, metavar="{train,calibrate,eval}")

    train = commands.add_parser("train", help="train the learned scorer on a labeled JSONL file")
    train.add_argument("labeled", type=Path, metavar="LABELED.jsonl")
    train.add_argument(
        "--out", type=Path, default=None, help="artifact path (default: the packaged artifact)"
    )
    train.add_argument("--c", type=float, default=10.0, help="inverse regularization strength (default 10)")
    train.add_argument(
        "--max-tokens", type=int, default=32, help="word pieces embedded per prompt (default 32)"
    )
    train.add_argument("--no-int8", action="store_true", help="embed in float32 instead of int8")
    train.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="held out when rows carry no `split`"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the random hold-out")
    train.set_defaults(handler=train_command)

    calibrate = commands.add_parser(
        "calibrate", help="thresholds from target traffic shares over sample prompts"
    )
    calibrate.add_argument("prompts", type=Path, metavar="PROMPTS.jsonl")
    calibrate.add_argument("--shares", required=True, help="shares of 0.8b,2b,4b,9b, e.g. 0.4,0.3,0.2,0.1")
    _add_config_options(calibrate)
    calibrate.set_defaults(handler=calibrate_command)

    evaluate = commands.add_parser("eval", help="route a labeled JSONL file and compare with its labels")
    evaluate.add_argument("labeled", type=Path, metavar="LABELED.jsonl")
    evaluate.add_argument(
        "--split", choices=("train", "heldout"), default=None, help="only rows of this split"
    )
    _add_config_options(evaluate)
    evaluate.set_defaults(handler=eval_command)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", type=Path, default=None, help="cluster config YAML (its router section and sizes)"
    )
    source.add_argument("--profile", choices=PROFILES, default=None, help="a shipped profile")
    parser.add_argument(
        "--scorer", choices=("features", "learned", "blend"), default=None, help="override the scorer"
    )
    parser.add_argument("--thresholds", default=None, help="override thresholds, e.g. 0.2,0.5,0.8")


def _router_setup(args: argparse.Namespace) -> tuple[RouterConfig, tuple[ModelSize, ...]]:
    """The router config and served sizes the options name (defaults: built-in config, all sizes)."""
    if args.config is None and args.profile is None:
        config, served = RouterConfig(), SIZES
    else:
        from cluster.config import load_config

        cluster = load_config(args.config, profile=args.profile)
        config, served = cluster.router, tuple(m.size for m in cluster.enabled_models())
    updates: dict[str, object] = {}
    if args.scorer:
        updates["scorer"] = args.scorer
    if args.thresholds:
        updates["thresholds"] = tuple(float(part) for part in args.thresholds.split(","))
    if updates:
        config = RouterConfig.model_validate({**config.model_dump(), **updates})
    return config, served


def _build(config: RouterConfig, served: tuple[ModelSize, ...]):
    from deployments.router.router import Router
    from deployments.router.scorers import build_scorer

    return Router(config, served, scorer=build_scorer(config))


def train_command(args: argparse.Namespace) -> int:
    """Handle `router train`."""
    from deployments.router.artifact import EmbeddingSettings
    from deployments.router.dataset import DatasetError
    from deployments.router.training import train

    settings = EmbeddingSettings(max_tokens=args.max_tokens, int8=not args.no_int8)
    try:
        _, report, written = train(
            args.labeled,
            args.out,
            settings=settings,
            c=args.c,
            holdout_fraction=args.holdout_fraction,
            seed=args.seed,
        )
    except (DatasetError, ValueError) as error:
        print(f"router train: {error}", file=sys.stderr)
        return USAGE_ERROR
    for line in report.lines():
        print(line)
    print(f"artifact written to {written}")
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    """Handle `router calibrate`."""
    from pydantic import ValidationError

    from cluster.config import ConfigError
    from deployments.router.calibration import (
        achieved_shares,
        parse_shares,
        thresholds_for_shares,
        yaml_snippet,
    )
    from deployments.router.dataset import DatasetError, load_rows

    try:
        shares = parse_shares(args.shares)
        config, served = _router_setup(args)
        rows = load_rows(args.prompts)
    except (ValueError, ConfigError, DatasetError, ValidationError) as error:
        print(f"router calibrate: {error}", file=sys.stderr)
        return USAGE_ERROR
    router = _build(config, served)
    scores = [d.difficulty for d in router.decide_many([r.request for r in rows])]
    thresholds = thresholds_for_shares(scores, shares)
    achieved = achieved_shares(scores, thresholds)
    print(f"scored {len(scores)} prompts with the {config.scorer} scorer")
    print("thresholds: " + ", ".join(f"t{i + 1}={t:.6g}" for i, t in enumerate(thresholds)))
    print("size    target  achieved")
    for size, target, got in zip(SIZES, shares, achieved, strict=True):
        print(f"{size:>5}  {target:7.1%}  {got:7.1%}")
    if set(served) != set(SIZES):
        print(
            f"note: only {', '.join(served)} are served; scores of unserved sizes go to the nearest served one"
        )
    print("\nPaste into the cluster config:\n")
    print(yaml_snippet(thresholds, config.scorer), end="")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """Handle `router eval`."""
    from pydantic import ValidationError

    from cluster.config import ConfigError
    from deployments.router.dataset import DatasetError, load_rows
    from deployments.router.evaluation import evaluate

    try:
        config, served = _router_setup(args)
        rows = load_rows(args.labeled, require_label=True, split=args.split)
    except (ValueError, ConfigError, DatasetError, ValidationError) as error:
        print(f"router eval: {error}", file=sys.stderr)
        return USAGE_ERROR
    router = _build(config, served)
    decisions = router.decide_many([r.request for r in rows])
    print(f"scorer: {config.scorer}, thresholds: {list(config.thresholds)}")
    for line in evaluate(rows, decisions, served).lines():
        print(line)
    return 0
