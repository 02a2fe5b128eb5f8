"""The batch job end to end on a real local Ray against a real S3 endpoint (moto_server on loopback).

One mixed corpus (multi-page PDFs, images in four formats, text, JSONL and Parquet manifests and every
bad input); the first run has an inference actor killed part way and must still write every row
exactly once; a second run must write nothing new; a routed run spreads rows over two sizes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import date

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from cluster.cli import EXIT_ROWS_FAILED
from cluster.config import parse_config
from pipelines.job import run_batch_job
from pipelines.plan import BatchJobSpec
from pipelines.schema import RESULT_SCHEMA
from tests.support.sample_corpus import write_sample_corpus

pytestmark = pytest.mark.integration

BUCKET = "batch-job"
RUN_DATE = date(2026, 11, 22)


def job_config(demo_cache, **batch):
    """The demo profile, small and fast: one 0.8b actor, tiny budgets, small result files."""
    from cluster.config import load_config

    data = load_config(profile="demo").model_dump(mode="json")
    data["cache_dir"] = str(demo_cache)
    data["ray"]["num_cpus"] = 4
    data["router"]["enabled"] = False  # every row to batch.default_size; the routed test turns it on
    data["batch"].update(
        {
            "max_image_pixels": 2_000_000,
            "rows_per_file": 3,
            "progress_interval_s": 1,
            # Long enough that results trickle out over seconds, so the killer lands mid-run even on
            # a quiet machine (with 6 tokens the whole job could finish between two polls).
            "tasks": {"max_tokens": {"describe": 64, "summarize": 64}},
            "default_pool": {"batch_size": 2, "num_cpus": 1},
            # One document per block: results then leave the pipeline document by document.
            "cpu_stages": {"reader_max_actors": 1, "num_cpus": 0.25, "documents_per_batch": 1},
        }
    )
    data["batch"].update(batch)
    return data


@pytest.fixture(scope="module")
def corpus(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    return write_sample_corpus(
        lambda key, body: client.put_object(Bucket=BUCKET, Key=f"incoming/{key}", Body=body),
        task="describe",
        huge_image_pixels=3_000_000,
    )


def read_partition(s3_server, prefix: str) -> pa.Table:
    fs = pafs.S3FileSystem(endpoint_override=s3_server.endpoint_url, region="us-east-1")
    dataset = pads.dataset(f"{BUCKET}/{prefix}", filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table()


def descendants_named(root_pid: int, title: str) -> list[int]:
    """PIDs below `root_pid` (this test's own Ray processes only) whose command line starts with `title`."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                commands[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue

    def below_root(pid: int) -> bool:
        for _ in range(16):
            pid = parents.get(pid, 0)
            if pid == root_pid:
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid, command in commands.items() if command.startswith(title) and below_root(pid)]


class InferenceActorKiller(threading.Thread):
    """Kills this test's inference actor once the first result file exists (a killed worker)."""

    def __init__(self, s3_server, prefix: str):
        super().__init__(daemon=True)
        self.client = s3_server.client()
        self.prefix = prefix
        self.killed: int | None = None
        self.files_at_kill = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
            if not listing.get("KeyCount"):
                continue
            pids = descendants_named(os.getpid(), "ray::MapWorker(MapBatches(InferenceStage))")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]
                self.files_at_kill = listing["KeyCount"]
                return


@pytest.fixture(scope="module")
def first_run(s3_server, corpus, demo_cache, local_ray):
    config = parse_config(job_config(demo_cache))
    spec = BatchJobSpec(
        "s3://batch-job/incoming/",
        "s3://batch-job/results/",
        "describe",
        config,
        run_date=RUN_DATE,
        s3_endpoint=s3_server.endpoint_url,
    )
    killer = InferenceActorKiller(s3_server, "results/date=2026-11-22/")
    killer.start()
    lines: list[str] = []
    summary = run_batch_job(spec, emit=lines.append)
    killer.stop.set()
    killer.join()
    return summary, killer, lines, spec


def test_every_expected_row_exactly_once_despite_a_killed_worker(s3_server, corpus, first_run):
    summary, killer, _, _ = first_run
    assert killer.killed is not None, "the inference actor was never seen, so nothing was killed"
    table = read_partition(s3_server, "results/")
    files = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix="results/")["KeyCount"]
    assert killer.files_at_kill < files, "the actor was killed after the last result file"
    keys = list(
        zip(table["doc_id"].to_pylist(), table["page"].to_pylist(), table["task"].to_pylist(), strict=True)
    )
    assert Counter(keys).most_common(1)[0][1] == 1, "a key was written twice"
    assert set(keys) == {(r.doc_id, r.page, r.task) for r in corpus.expected}
    error_kinds = dict(zip(keys, table["error_kind"].to_pylist(), strict=True))
    for row in corpus.expected:
        assert error_kinds[(row.doc_id, row.page, row.task)] == row.error_kind, row
    assert summary.duplicate_rows == 0


def test_schema_partition_and_row_contents(s3_server, first_run):
    table = read_partition(s3_server, "results/")
    assert table.select(RESULT_SCHEMA.names).schema == RESULT_SCHEMA
    assert set(table["date"].to_pylist()) == {"2026-11-22"}
    rows = table.to_pylist()
    good = [r for r in rows if r["error"] is None]
    assert good and all(r["model"] == "qwen3.5-0.8b" and r["output"] is not None for r in good)
    assert all(
        r["prompt_tokens"] > 0 and 0 < r["completion_tokens"] <= 64 and r["latency_ms"] > 0 for r in good
    )
    assert all(r["difficulty"] is None and r["output_json"] is None for r in rows)  # router off, describe
    pdf_pages = [r for r in good if r["doc_id"].endswith(".pdf")]
    assert pdf_pages and all(r["page_count"] == 3 for r in pdf_pages)
    failed = [r for r in rows if r["error"] is not None]
    assert all(r["error_kind"] and r["error"] for r in failed)
    huge = next(r for r in failed if r["doc_id"] == "bad/huge.png")
    assert "limit is 2,000,000" in huge["error"]


def test_summary_counts_and_exit_code(corpus, first_run):
    summary, _, lines, _ = first_run
    expected_errors = Counter(r.error_kind for r in corpus.expected if r.error_kind)
    assert summary.exit_code == EXIT_ROWS_FAILED
    assert dict(summary.run.errors_by_kind) == dict(expected_errors)
    assert summary.run.rows == len(corpus.expected) and summary.run.pages == corpus.pages
    assert summary.listed_documents == len(corpus.keys) and summary.skipped_documents == 0
    assert summary.run.rows_by_model["qwen3.5-0.8b"] > 0
    assert summary.run.cost_vs_largest() == pytest.approx(0.8 / 9)
    assert lines and all(line.startswith("progress: ") for line in lines)
    assert "pages/s" in summary.format()


def test_second_run_writes_nothing_new(s3_server, corpus, first_run):
    _, _, _, spec = first_run
    client = s3_server.client()
    before = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="results/")["Contents"])
    summary = run_batch_job(spec)
    after = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="results/")["Contents"])
    assert after == before
    assert summary.run.rows == 0
    # Files and the whole-document failures are skipped at listing; manifests are re-read (cheap).
    assert summary.skipped_documents == len(corpus.keys) - 2
    assert summary.partition.rows == len(corpus.expected) and summary.exit_code == EXIT_ROWS_FAILED


@pytest.mark.parametrize("colocate", [False, True], ids=["pool-per-size", "colocated"])
def test_routed_run_answers_each_page_with_its_size(s3_server, corpus, demo_cache, local_ray, colocate):
    from cluster.router_config import RouterConfig
    from deployments.router.policy import RoutingPolicy

    # A pool per size (one branch each), or one branch whose actors hold both sizes.
    data = job_config(demo_cache, colocate_sizes=colocate, colocated_pool={"batch_size": 2, "num_cpus": 1})
    data["models"] = [m for m in data["models"] if m["size"] in ("0.8b", "2b")]
    # The feature scorer puts the corpus's images, notes and one-line texts below 0.39 (0.20-0.38),
    # its PDF pages (long text layers) above (0.41), so a threshold at 0.39 sends rows to both sizes.
    thresholds = (0.39, 0.99, 1.0)
    data["router"].update(enabled=True, scorer="features", policy="thresholds", thresholds=list(thresholds))
    # The corpus is small enough for the driver to route it; this run covers the Ray Data light pass.
    data["batch"]["cpu_stages"]["local_routing_max_documents"] = 0
    spec = BatchJobSpec(
        "s3://batch-job/incoming/",
        f"s3://batch-job/routed-{colocate}/",
        "describe",
        parse_config(data),
        run_date=RUN_DATE,
        s3_endpoint=s3_server.endpoint_url,
    )
    summary = run_batch_job(spec)
    table = read_partition(s3_server, f"routed-{colocate}/")
    assert table.num_rows == len(corpus.expected) and summary.duplicate_rows == 0
    policy = RoutingPolicy(
        RouterConfig(enabled=True, policy="thresholds", thresholds=thresholds), ["0.8b", "2b"]
    )
    rows = [r for r in table.to_pylist() if r["error"] is None]
    for row in rows:
        assert 0.0 <= row["difficulty"] <= 1.0
        assert row["model"] == f"qwen3.5-{policy.size_for(row['difficulty'])[0]}"
    assert {r["model"] for r in rows} == {"qwen3.5-0.8b", "qwen3.5-2b"}
    assert set(summary.run.rows_by_model) >= {"qwen3.5-0.8b", "qwen3.5-2b"}
    assert 0.8 / 9 < summary.run.cost_vs_largest() < 2 / 9
