"""`qwen-cluster batch`: run a batch document job.

Exit codes: 0 every row of the partition succeeded; 2 some rows failed (their error rows are
written); 1 the job itself failed (bad arguments or config, storage unreachable, a stage failing for
good). Running the same command again resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

from cluster.batch_config import TASK_NAMES
from cluster.cli import EXIT_FAILURE, add_config_arguments, config_from_args
from cluster.config import ClusterConfig, ConfigError

log = logging.getLogger(__name__)

# What a job that stopped part-way leaves, and how to go on (result files are written atomically).
RESUME_HINT = "rows written so far are kept, and running it again resumes"


def parse_run_date(value: str | None) -> date | None:
    """The `--date` value; checked in the handler (not by argparse, whose usage errors exit 2, the
    code for failed rows), since a scheduler fills it in.

    Raises:
        ValueError: when it is not YYYY-MM-DD.
    """
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--date must be a date in YYYY-MM-DD form; got {value!r}") from None


def with_extract_schema(config: ClusterConfig, path: Path) -> ClusterConfig:
    """The config with `batch.tasks.extract_schema` read from `path`.

    Raises:
        ValueError: naming the file, when it cannot be read, is not JSON, or is not a valid JSON
            Schema (draft 2020-12).
    """
    from pydantic import ValidationError

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"--schema {path}: cannot read it: {error.strerror or error}") from None
    except ValueError as error:
        raise ValueError(f"--schema {path}: not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"--schema {path}: a JSON Schema must be an object, got {type(schema).__name__}")
    tasks = config.batch.tasks
    try:
        tasks = type(tasks).model_validate({**tasks.model_dump(), "extract_schema": schema})
    except ValidationError as error:
        raise ValueError(f"--schema {path}: {error.errors()[0]['msg']}") from None
    batch = config.batch.model_copy(update={"tasks": tasks})
    return config.model_copy(update={"batch": batch})


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `batch` command to a `qwen-cluster` parser."""
    parser = subparsers.add_parser(
        "batch",
        help="run a batch document job (PDFs, images, text, manifests) to Parquet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input", required=True, help="input prefix or file: s3://bucket/prefix/ or a local path"
    )
    parser.add_argument("--output", required=True, help="output prefix: s3://bucket/results/ or a local path")
    parser.add_argument("--task", required=True, choices=TASK_NAMES, help="what to do with every page")
    parser.add_argument("--prompt", help="the prompt of --task custom")
    parser.add_argument(
        "--schema",
        type=Path,
        help="JSON Schema file for --task extract (default: batch.tasks.extract_schema); answers decode under it",
    )
    parser.add_argument("--date", help="date partition to write, YYYY-MM-DD (default: today in UTC)")
    add_config_arguments(parser)
    parser.add_argument(
        "--s3-endpoint",
        help="S3-compatible endpoint URL (default: object_store.endpoint_url, then $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON to this file")
    parser.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """Handle `batch`: run the job, print its summary, return the exit code."""
    from pipelines.job import run_batch_job
    from pipelines.plan import BatchJobError, BatchJobSpec, utc_today

    try:
        config = config_from_args(args)
        if getattr(args, "schema", None) is not None:
            if args.task != "extract":
                raise ValueError("--schema is for --task extract")
            config = with_extract_schema(config, args.schema)
        spec = BatchJobSpec(
            input_uri=args.input,
            output_uri=args.output,
            task=args.task,
            config=config,
            prompt=args.prompt,
            run_date=parse_run_date(args.date) or utc_today(),
            s3_endpoint=args.s3_endpoint,
        )
    except (ConfigError, ValueError) as error:
        print(f"batch: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        summary = run_batch_job(spec, emit=lambda line: print(line, flush=True))
    except BatchJobError as error:
        print(f"batch: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # storage unreachable or refusing: the cause is in its message
        log.debug("batch job failed", exc_info=True)
        print(f"batch: job stopped: {type(error).__name__}: {error}; {RESUME_HINT}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception:
        log.exception("batch job failed; %s", RESUME_HINT)
        return EXIT_FAILURE
    print(summary.format(), flush=True)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    return summary.exit_code
