"""The `router` command of `qwen-cluster`: `label`, `train`, `calibrate`, `eval` and `retrain`.

`train` without LABELED.jsonl fits the item-response difficulty scorer on the public table
(difficulty_training.py) and exits non-zero when it misses its held-out goals; `eval --loso` prints
the leave-one-source-out figures.

`register(subparsers)` adds the command; each sub-command's handler is stored as `handler` in the
parsed namespace and returns an exit status, so `cluster/cli.py` runs `args.handler(args)`. Handlers print
to stdout and raise nothing for bad input: they print the problem to stderr and return 1 (`cluster.cli.EXIT_FAILURE`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.catalog import SIZES, ModelSize
from cluster.cli import EXIT_FAILURE, add_config_arguments
from cluster.router_config import RouterConfig
from pipelines.router_training import retrain

# One exit-code policy for every command (cluster.cli): bad input is a failure, 1.
USAGE_ERROR = EXIT_FAILURE


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `router label|train|calibrate|eval|retrain` to a `qwen-cluster` sub-command parser."""
    router = subparsers.add_parser("router", help="label, train, calibrate and evaluate the router")
    commands = router.add_subparsers(
        dest="router_command", required=True, metavar="{label,train,calibrate,eval,retrain}"
    )

    label = commands.add_parser("label", help="answer prompts on every served size and grade them")
    label.add_argument("--input", type=Path, required=True, metavar="PROMPTS.jsonl", help="rows with `id`")
    label.add_argument("--reference", type=Path, required=True, metavar="ANSWERS.jsonl", help="graders by `id`")
    label.add_argument("--base-url", required=True, help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    label.add_argument("--out", type=Path, default=Path("correct.jsonl"), help="output (default correct.jsonl)")
    label.add_argument("--api-key", default=None, help="bearer token, when the server wants one")
    label.add_argument("--max-tokens", type=int, default=512, help="answer length limit (default 512)")
    label.set_defaults(handler=label_command)

    train = commands.add_parser(
        "train",
        help="fit the difficulty scorer on public answers (no LABELED.jsonl), or the older "
        "level/family heads on LABELED.jsonl",
    )
    train.add_argument(
        "labeled",
        type=Path,
        nargs="*",
        metavar="LABELED.jsonl",
        help="train the older level/family-head artifact on these rows instead (one file or several)",
    )
    _add_public_options(train)
    train.add_argument(
        "--correct", type=Path, default=None, help="rows with per-size `correct` (from `router label`)"
    )
    train.add_argument(
        "--base", type=Path, default=None, help="artifact whose heads are kept without LABELED.jsonl"
    )
    train.add_argument(
        "--out", type=Path, default=None, help="artifact path (default: the packaged artifact)"
    )
    train.add_argument("--c", type=float, default=1.0, help="family head inverse regularization (default 1)")
    # No literal defaults for the embedding: unset, they are EmbeddingSettings' (what the packaged
    # artifact was trained on), so the CLI cannot drift from the settings cross-validation chose.
    train.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="word pieces embedded per prompt (default: the shipped setting)",
    )
    train.add_argument("--no-int8", action="store_true", help="embed in float32 instead of int8")
    train.add_argument(
        "--layers",
        type=int,
        default=None,
        help="MiniLM transformer layers used, 1-6 (default: the shipped setting)",
    )
    train.set_defaults(handler=train_command)

    calibrate = commands.add_parser(
        "calibrate", help="thresholds from target traffic shares over sample prompts"
    )
    calibrate.add_argument("prompts", type=Path, metavar="PROMPTS.jsonl")
    calibrate.add_argument("--shares", required=True, help="shares of 0.8b,2b,4b,9b, e.g. 0.4,0.3,0.2,0.1")
    _add_config_options(calibrate)
    calibrate.set_defaults(handler=calibrate_command)

    evaluate = commands.add_parser(
        "eval", help="route a labeled JSONL file and compare with its labels; --loso: per public source"
    )
    evaluate.add_argument("labeled", type=Path, nargs="?", default=None, metavar="LABELED.jsonl")
    evaluate.add_argument(
        "--loso",
        action="store_true",
        help="leave-one-source-out on the public table: APGR per ladder pair, Spearman, tier figures",
    )
    _add_public_options(evaluate)
    evaluate.add_argument(
        "--split",
        choices=("train", "heldout", "heldout_family", "heldout_phrasing"),
        default=None,
        help="only rows of this split (`heldout`: every held-out row)",
    )
    evaluate.add_argument("--correct", type=Path, default=None, help="also report quality/APGR on these rows")
    evaluate.add_argument("--curve", type=Path, default=None, help="write the quality-vs-cost PNG here")
    _add_config_options(evaluate)
    evaluate.set_defaults(handler=eval_command)
    retrain.register(commands)  # the nightly refit from shadow labels (its own module)


def _add_public_options(parser: argparse.ArgumentParser) -> None:
    from pipelines.router_training.difficulty_training import (
        DEFAULT_MODELS,
        DEFAULT_PUBLIC,
        DEFAULT_TEMPLATES,
    )

    parser.add_argument("--public", type=Path, default=DEFAULT_PUBLIC, help="the public-results table")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="its models' families and sizes")
    parser.add_argument(
        "--templates", type=Path, default=DEFAULT_TEMPLATES, help="team-written rows with rubric levels"
    )
    parser.add_argument("--report", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--cache", type=Path, default=Path(".cache/router-training"), help="embedding and IRT-fit cache"
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    # Neither --config nor --profile: the built-in router config over every size.
    add_config_arguments(parser, default_profile=None)
    parser.add_argument(
        "--scorer", choices=("features", "learned", "blend"), default=None, help="override the scorer"
    )
    parser.add_argument("--thresholds", default=None, help="override thresholds, e.g. 0.2,0.5,0.8")
    parser.add_argument(
        "--policy", choices=("quality", "thresholds"), default=None, help="override the policy"
    )
    parser.add_argument("--tolerance", type=float, default=None, help="override quality_tolerance")
    parser.add_argument("--artifact", type=Path, default=None, help="override the learned artifact path")


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
    if args.policy:
        updates["policy"] = args.policy
    if args.tolerance is not None:
        updates["quality_tolerance"] = args.tolerance
    if args.artifact is not None:
        updates["artifact_path"] = args.artifact
    if updates:
        config = RouterConfig.model_validate({**config.model_dump(), **updates})
    return config, served


def _build(config: RouterConfig, served: tuple[ModelSize, ...]):
    from deployments.router.router import Router
    from deployments.router.scorers import build_scorer

    return Router(config, served, scorer=build_scorer(config))


def label_command(args: argparse.Namespace) -> int:
    """Handle `router label`."""
    import httpx

    from pipelines.router_training.dataset import DatasetError
    from pipelines.router_training.labeling import ApiClient, label

    client = ApiClient(args.base_url, api_key=args.api_key)
    try:
        written = label(args.input, args.reference, args.out, client, max_tokens=args.max_tokens)
    except DatasetError as error:
        print(f"router label: {error}", file=sys.stderr)
        return USAGE_ERROR
    except httpx.HTTPError as error:
        print(f"router label: the server at {args.base_url} failed: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"{written} rows with per-size `correct` written to {args.out}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    """Handle `router train`."""
    from deployments.router.artifact import EmbeddingSettings
    from pipelines.router_training.dataset import DatasetError
    from pipelines.router_training.training import train

    given = {"max_tokens": args.max_tokens, "layers": args.layers}
    settings = EmbeddingSettings(int8=not args.no_int8, **{k: v for k, v in given.items() if v is not None})
    if not args.labeled and args.correct is None:
        return _train_difficulty(args, settings)
    try:
        _, report, written = train(
            args.labeled or None, args.out, correct=args.correct, base=args.base, settings=settings, c=args.c
        )
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"router train: {error}", file=sys.stderr)
        return USAGE_ERROR
    for line in report.lines():
        print(line)
    print(f"artifact written to {written}")
    return 0


def _train_difficulty(args: argparse.Namespace, settings) -> int:
    """`router train` without LABELED.jsonl: the difficulty scorer from the public table."""
    from pipelines.router_training.dataset import DatasetError
    from pipelines.router_training.difficulty_training import train_difficulty

    try:
        run = train_difficulty(
            args.public,
            args.models,
            args.templates,
            args.out,
            settings=settings,
            cache=args.cache,
            report_path=args.report,
        )
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"router train: {error}", file=sys.stderr)
        return USAGE_ERROR
    for line in run.lines:
        print(line)
    # Missing the held-out goals is a failed run, whether or not an artifact was written elsewhere.
    return 0 if run.report.goals_met() else 1


def _eval_loso(args: argparse.Namespace) -> int:
    """`router eval --loso`: leave-one-source-out on the public table."""
    from deployments.router.artifact import EmbeddingSettings
    from pipelines.router_training.dataset import DatasetError
    from pipelines.router_training.difficulty_training import DEFAULT_INPUTS, evaluate_sources, load_corpus
    from pipelines.router_training.irt_training import RIDGE_ALPHA

    try:
        corpus = load_corpus(args.public, args.templates, None, EmbeddingSettings(), args.cache)
        report, _ = evaluate_sources(corpus, args.models, DEFAULT_INPUTS, RIDGE_ALPHA, args.cache)
    except (DatasetError, ValueError, FileNotFoundError) as error:
        print(f"router eval: {error}", file=sys.stderr)
        return USAGE_ERROR
    lines = report.lines()
    for line in lines:
        print(line)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text("\n".join(lines) + "\n")
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    """Handle `router calibrate`."""
    from pydantic import ValidationError

    from cluster.config import ConfigError
    from pipelines.router_training.calibration import (
        achieved_shares,
        parse_shares,
        thresholds_for_shares,
        yaml_snippet,
    )
    from pipelines.router_training.dataset import DatasetError, load_rows

    try:
        shares = parse_shares(args.shares)
        config, served = _router_setup(args)
        rows = load_rows(args.prompts)
    except (ValueError, ConfigError, DatasetError, ValidationError) as error:
        print(f"router calibrate: {error}", file=sys.stderr)
        return USAGE_ERROR
    router = _build(config, served)
    decisions = router.decide_many([r.request for r in rows])
    if config.policy == "quality" and decisions and decisions[0].estimates:
        from pipelines.router_training.calibration import bias_for_shares, bias_snippet

        wanted = [shares[SIZES.index(s)] for s in served]
        total = sum(wanted) or 1.0
        wanted = [w / total for w in wanted]
        bias, achieved = bias_for_shares(
            [d.estimates for d in decisions], served, config.quality_tolerance, wanted
        )
        print(f"scored {len(decisions)} prompts with the {router.scorer.name} scorer, policy quality")
        print("size_bias: " + (", ".join(f"{s}={b:+.2f}" for s, b in bias.items()) or "none needed"))
        print("size    target  achieved")
        for size, target, got in zip(served, wanted, achieved, strict=True):
            print(f"{size:>5}  {target:7.1%}  {got:7.1%}")
        print("\nPaste into the cluster config:\n")
        print(bias_snippet(bias, config.quality_tolerance), end="")
        return 0
    scores = [d.difficulty for d in decisions]
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
    from pipelines.router_training.dataset import DatasetError, load_rows
    from pipelines.router_training.evaluation import evaluate

    if args.loso:
        status = _eval_loso(args)
        if args.labeled is None or status != 0:
            return status
    elif args.labeled is None:
        print("router eval: give LABELED.jsonl, --loso, or both", file=sys.stderr)
        return USAGE_ERROR
    try:
        config, served = _router_setup(args)
        rows = load_rows(args.labeled, require_label=True, split=args.split)
        if args.correct is not None:
            load_rows(args.correct, require_label=True)  # fail on a bad row before any work
    except (ValueError, ConfigError, DatasetError, ValidationError) as error:
        print(f"router eval: {error}", file=sys.stderr)
        return USAGE_ERROR
    router = _build(config, served)
    decisions = router.decide_many([r.request for r in rows])
    policy = (
        f"quality, tolerance {config.quality_tolerance}"
        if config.policy == "quality"
        else f"thresholds {list(config.thresholds)}"
    )
    print(f"scorer: {router.scorer.name}, policy: {policy}, quality table: {router.policy.quality.source}")
    report = evaluate(rows, decisions, served)
    correct_rows, correct_decisions = [], []
    if args.correct is not None:
        correct_rows = load_rows(args.correct, require_label=True)
        correct_decisions = router.decide_many([r.request for r in correct_rows])
        report.quality = evaluate(correct_rows, correct_decisions, served).quality
    for line in report.lines():
        print(line)
    if config.policy == "quality":
        from pipelines.router_training.sweep import plot, sweep, sweep_lines

        points, measured = (
            sweep(correct_rows, correct_decisions, served) if correct_rows else sweep(rows, decisions, served)
        )
        for line in sweep_lines(points, measured):
            print(line)
        if args.curve is not None:
            print(f"quality-vs-cost curve written to {plot(points, measured, args.curve)}")
    for line in report.goal_lines():
        print(line)
    return 0
