"""A batch job loses a worker node mid-run: `python bench/batch_node_loss.py [--cache DIR]`.

Runs on a local multi-node Ray cluster (`ray.cluster_utils.Cluster`, several raylets on this host):
a head that takes no work (`num_cpus: 0`, as KubeRay head groups are usually set) and two worker
nodes. The batch job (`run_batch_job`, the `batch` command's own code, summarize over a small mixed
corpus in a local folder) runs in a thread of this process. As soon as its first result file lands,
the worker node running the inference actor is removed (SIGKILL of its raylet and workers, what a
lost pod is), and a replacement node is added, as KubeRay replaces a pod of the same group. Ray Data
restarts the actor and re-runs the lost tasks; the job must still write every row exactly once.

Prints one figure per line, then the figures as one JSON line: expected and written rows, duplicate
keys, the job's exit code, rows written before the removal, which node went, and seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, when run as a script

RUN_DATE = date(2026, 12, 1)


def job_config(cache: Path):
    """The demo profile, one size, rows trickling out so the removal lands mid-run."""
    from cluster.config import parse_config
    from tests.support.batch_configs import trickle_config

    return parse_config(trickle_config(str(cache), summarize_tokens=32))


def inference_node(timeout_s: float = 120.0) -> str | None:
    """The node id of the live inference actor, once Ray Data has started it."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
            if "InferenceStage" in (actor.class_name or ""):
                return actor.node_id
        time.sleep(0.5)  # polling the state API: Ray has no event for "an actor of this class started"
    return None


def result_rows(partition: Path) -> list[tuple]:
    """(doc_id, page, task) of every row in the partition's result files."""
    import pyarrow.dataset as pads

    files = sorted(p for p in partition.glob("part-*") if p.is_file()) if partition.is_dir() else []
    if not files:
        return []
    table = pads.dataset(files, format="parquet").to_table(columns=["doc_id", "page", "task"])
    return list(zip(*(table[name].to_pylist() for name in ("doc_id", "page", "task")), strict=True))


def run(cache: Path, job_timeout_s: float) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from deployments.engines.demo_models import ensure_demo_models
    from pipelines.job import run_batch_job
    from pipelines.plan import BatchJobSpec
    from tests.support.sample_corpus import write_sample_corpus

    ensure_demo_models(cache, sizes=["0.8b"])
    work = Path(tempfile.mkdtemp(prefix="batch-node-loss-"))
    source, output = work / "in", work / "out"

    def put(key: str, body: bytes) -> None:
        path = source / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    corpus = write_sample_corpus(
        put, task="summarize", pdfs=3, pages_per_pdf=4, images=4, texts=2, manifest=True, bad_inputs=False
    )
    expected = {(row.doc_id, row.page, row.task) for row in corpus.expected}
    partition = output / f"date={RUN_DATE.isoformat()}"
    config = job_config(cache)
    spec = BatchJobSpec(
        input_uri=str(source), output_uri=str(output), task="summarize", config=config, run_date=RUN_DATE
    )

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["summary"] = run_batch_job(spec)
        except BaseException as error:  # reported in the figures, not raised in a thread
            outcome["error"] = repr(error)

    figures: dict = {"expected_rows": len(expected)}
    started = time.monotonic()
    thread = threading.Thread(target=job, name="batch-job", daemon=True)
    thread.start()
    try:
        node_id = inference_node()
        victim = next((w for w in workers if w.node_id == node_id), workers[-1])
        figures["removed_node_ran_inference"] = node_id is not None and victim.node_id == node_id
        deadline = time.monotonic() + job_timeout_s
        while not result_rows(partition) and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # another thread's files: polling the folder is the only signal
        figures["rows_before_removal"] = len(result_rows(partition))
        figures["removed_at_s"] = round(time.monotonic() - started, 2)
        # On the main thread: starting a Ray node installs signal handlers.
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(num_cpus=2)
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
        figures["hung"] = thread.is_alive()
        figures["seconds"] = round(time.monotonic() - started, 2)
        rows = result_rows(partition)
        counts = Counter(rows)
        figures["written_rows"] = len(rows)
        figures["duplicate_rows"] = sum(n - 1 for n in counts.values())
        figures["missing_rows"] = len(expected - set(counts))
        summary = outcome.get("summary")
        figures["exit_code"] = summary.exit_code if summary is not None else None
        figures["job_error"] = outcome.get("error")
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qwen-cluster")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds the job may take in all")
    args = parser.parse_args()
    figures = run(args.cache, args.timeout)
    for name, value in figures.items():
        print(name, value)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
