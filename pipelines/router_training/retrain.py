"""`qwen-cluster router retrain --labels URI`: refit the router's calibration from its own labels.

A Ray Data job: the label files under `--labels` (the ingress's `router.shadow.output`) are read in
parallel tasks, each skipping a corrupt file or one of another schema version with a count; the
driver gathers the fitting rows, refits the per-size calibration starting from the artifact in use
(`--current`, else `router.reload.calibration_uri`, else identity), and writes the candidate to
`--out` (default: the reload URI, so the ingress picks it up) only when it beats the one in use on a
held-out slice of the same labels. The report (JSON on stdout) holds the read counts, the gate's
figures and the escalation threshold the labels call for at `--target-quality`; a written artifact
carries that threshold too (`escalation`), for ingresses with `threshold_from_artifact` on.

Exit codes: 0 written or kept by the gate, 1 bad input (no label files, no usable rows, bad config).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cluster.cli import EXIT_FAILURE, add_config_arguments

if TYPE_CHECKING:
    from deployments.router.calibration import Calibration

READ_TASK_CPUS = 0.25


def register(commands: argparse._SubParsersAction) -> None:
    """Add `router retrain` to the `router` sub-commands."""
    retrain = commands.add_parser(
        "retrain", help="refit the router's calibration from shadow labels (Ray Data)"
    )
    retrain.add_argument("--labels", required=True, help="label files: s3://bucket/prefix or a local folder")
    retrain.add_argument("--current", default=None, help="calibration in use (default: router.reload)")
    retrain.add_argument(
        "--out", default=None, help="where a better calibration goes (default: router.reload)"
    )
    retrain.add_argument(
        "--scorer", default=None, help="scorer the labels' estimates came from (default: config)"
    )
    retrain.add_argument("--s3-endpoint", default=None, help="S3 endpoint override (default: config)")
    retrain.add_argument(
        "--holdout", type=float, default=0.2, help="held-out share of requests (default 0.2)"
    )
    retrain.add_argument("--min-gain", type=float, default=0.0, help="log-loss drop the gate asks for")
    retrain.add_argument(
        "--min-rows", type=int, default=30, help="labels a size needs to be refitted (default 30)"
    )
    retrain.add_argument(
        "--target-quality", type=float, default=0.8, help="kept-answer accuracy for escalation"
    )
    add_config_arguments(retrain, default_profile=None)
    retrain.set_defaults(handler=retrain_command)


def label_file_uris(storage, labels_uri: str) -> list[str]:
    """The label files the retrain reads under `labels_uri` (a `pipelines.storage.Storage`):
    `*.parquet` only, and no hidden name, so the `.tmp-` file of a local write that was cut short
    (a killed writer) is never read as a label file."""
    from pipelines.storage import parse_uri

    return [
        f.location.uri
        for f in storage.list_files(parse_uri(labels_uri))
        if f.location.name.endswith(".parquet")
    ]


def read_labels(
    labels_uri: str, endpoint: str | None, region: str, scorer: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every fitting row under `labels_uri` and the read counts, through Ray Data (one task per file);
    with `scorer`, only records whose estimates came from that scorer.

    Raises:
        FileNotFoundError: when there is no label file there.
    """
    import ray

    from pipelines.storage import Storage, StorageOptions

    options = StorageOptions(endpoint_url=endpoint, region=region)
    files = label_file_uris(Storage(options), labels_uri)
    if not files:
        raise FileNotFoundError(f"no label files (*.parquet) under {labels_uri}")

    def read_one(item: dict[str, Any]) -> dict[str, Any]:
        from pipelines.router_training.shadow_labels import read_label_file
        from pipelines.storage import Storage, parse_uri

        location = parse_uri(item["uri"])
        try:
            data = Storage(options).read_bytes(location)
        except OSError as error:
            data = f"unreadable: {error}".encode()
        rows, counts = read_label_file(item["uri"], data, scorer)
        return {"rows": json.dumps(rows), "counts": json.dumps(vars(counts))}

    from pipelines.router_training.shadow_labels import ReadCounts

    # Reading a label file is I/O and a little decoding: a quarter CPU per task lets the job run
    # beside a serving app that holds nearly every CPU of a small cluster.
    dataset = ray.data.from_items([{"uri": uri} for uri in files]).map(read_one, num_cpus=READ_TASK_CPUS)
    rows: list[dict[str, Any]] = []
    total = ReadCounts()
    for item in dataset.iter_rows():
        rows.extend(json.loads(item["rows"]))
        total.add(ReadCounts(**json.loads(item["counts"])))
    return rows, vars(total)


def retrain(
    labels_uri: str,
    *,
    scorer: str,
    served: tuple[str, ...],
    current_uri: str | None,
    out_uri: str | None,
    endpoint: str | None = None,
    region: str = "us-east-1",
    holdout: float = 0.2,
    min_gain: float = 0.0,
    min_rows: int = 30,
    target_quality: float = 0.8,
) -> dict[str, Any]:
    """Run the job; returns its report (`written` says whether a new artifact went to `out_uri`).

    Raises:
        FileNotFoundError: no label files.
        ValueError: no usable rows, or a current artifact that cannot be read as one.
    """
    from deployments.object_store import ObjectStore
    from deployments.router.calibration import parse_calibration
    from pipelines.router_training.confidence import escalation_threshold
    from pipelines.router_training.refit import refit_and_gate

    rows, counts = read_labels(labels_uri, endpoint, region, scorer)
    if not rows:
        raise ValueError(f"no usable label rows under {labels_uri} (read counts: {counts})")
    store = ObjectStore(endpoint, region)
    current = None
    if current_uri and store.exists(current_uri):
        current = parse_calibration(store.read_bytes(current_uri), served_sizes=served, scorer=scorer)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    gate = refit_and_gate(
        rows,
        current,
        scorer,
        holdout_share=holdout,
        min_gain=min_gain,
        min_rows_per_size=min_rows,
        version=version,
    )
    report: dict[str, Any] = {
        "labels": labels_uri,
        "read": counts,
        "started_from": current_uri if current else "identity",
        "gate": gate.figures,
        "accepted": gate.accepted,
        "escalation": escalation_threshold(rows, target_quality),
        "written": None,
    }
    if gate.accepted and out_uri:
        candidate = with_escalation(gate.candidate, report["escalation"])
        store.write_atomic(out_uri, candidate.to_json().encode())
        report["written"] = out_uri
        report["version"] = version
        report["escalation"]["in_artifact"] = candidate.escalation is not None
    return report


def with_escalation(candidate: Calibration, escalation: dict[str, Any]) -> Calibration:
    """The candidate `Calibration` carrying the threshold of an `escalation_threshold` report; as it
    is when the labels call for none (no rows, or no threshold reaches the target): the ingress then
    keeps its configured `min_token_prob`."""
    import dataclasses

    from deployments.router.calibration import EscalationThreshold
    from pipelines.router_training.confidence import QUANTILE

    if escalation.get("min_token_prob") is None:
        return candidate
    threshold = EscalationThreshold(escalation["min_token_prob"], QUANTILE, escalation["target_quality"])
    report = {**candidate.report, "escalation": dict(escalation)}
    return dataclasses.replace(candidate, escalation=threshold, report=report)


def retrain_command(args: argparse.Namespace) -> int:
    """Handle `router retrain`."""
    import logging

    from pydantic import ValidationError

    from cluster.config import ClusterConfig, ConfigError, load_config

    try:
        if args.config is None and args.profile is None:
            config = ClusterConfig.model_validate(
                {"models": [{"size": s} for s in ("0.8b", "2b", "4b", "9b")]}
            )
        else:
            config = load_config(args.config, profile=args.profile)
    except (ConfigError, ValidationError) as error:
        print(f"router retrain: {error}", file=sys.stderr)
        return EXIT_FAILURE
    reload_uri = config.router.reload.calibration_uri
    out_uri = args.out or reload_uri
    if out_uri is None:
        print("router retrain: give --out or set router.reload.calibration_uri", file=sys.stderr)
        return EXIT_FAILURE
    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray.address, namespace=config.ray.namespace, log_to_driver=False)
    try:
        report = retrain(
            args.labels,
            scorer=args.scorer or config.router.scorer,
            served=tuple(m.size for m in config.enabled_models()),
            current_uri=args.current or reload_uri,
            out_uri=out_uri,
            endpoint=args.s3_endpoint or config.object_store.resolved_endpoint(),
            region=config.object_store.region,
            holdout=args.holdout,
            min_gain=args.min_gain,
            min_rows=args.min_rows,
            target_quality=args.target_quality,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"router retrain: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if started_here:
            ray.shutdown()
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
