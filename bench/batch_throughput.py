"""Batch pipeline throughput and memory, against the committed pipeline and a plain sequential loop,
from a loopback S3 endpoint.

    python bench/batch_throughput.py [--pages 1000] [--sizes 4] [--baseline head|tree] [--loop-pages 0]
                                     [--max-tokens 16] [--repeat 1]
    python bench/batch_throughput.py --peer ray-data-llm [bench/ray_data_llm_peer.py's options]

Writes a mixed corpus (half PDF pages, five per PDF, half images in PNG/JPEG) to `moto_server` on a
free loopback port, then for each corpus size runs `run_batch_job` (task describe, demo profile:
random weights on CPU, a fresh local Ray per run) and reports pages/s, tokens/s and the peak memory
(PSS, which counts shared pages such as the object store once) of the whole process tree: this
script, Ray and its workers.

`--sizes 4` routes over the four demo sizes (feature scorer, thresholds set from this corpus's
difficulty quantiles so every size gets rows); `--sizes 1` turns the router off (one size).
`--layout` sets how the working tree's routed pipeline places its engines: as the demo profile says
(`profile`: all sizes in each of two actors), `colocated`, or `per-size` (a branch and pool per size);
the baseline runs as its own profile says.
`--baseline head` also runs the pipeline as committed at git HEAD, or at `--baseline-ref` (its
`pipelines/` copied into a temporary package; labelled HEAD in the table), on the same corpus and
config, alternating with the working tree's `--repeat` times, so the two are measured in the same
run. `--baseline tree` runs the whole project at `--baseline-ref` instead (its engine, router and
pipeline, with its own demo checkpoints and its own equal-share thresholds) through
bench/batch_tree.py in a child process: the product as it was, not only its pipeline. The loop
(`--loop-pages`, one size only) reads the same objects, expands pages with the same code, and sends
one request at a time to the same engine in this process.

The pipeline's time runs from its first stage to the last result file and includes starting its
actors (loading the engine); the loop's time excludes loading its engine. Other work on the machine
moves the figures: compare runs taken together.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path
from types import ModuleType

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))  # batch_tree, whichever the working directory

from batch_tree import demo_config, page_scores  # noqa: E402
from git_tree import export_tree  # noqa: E402

import pipelines.job as current_job  # noqa: E402
from cluster.config import ClusterConfig, parse_config  # noqa: E402
from pipelines.documents import DocumentExpander, kind_from_name  # noqa: E402
from pipelines.imaging import fit_image  # noqa: E402
from pipelines.plan import BatchJobSpec, plan_job  # noqa: E402
from pipelines.resume import DoneIndex  # noqa: E402
from pipelines.schema import KIND_IMAGE  # noqa: E402
from pipelines.storage import Storage  # noqa: E402
from tests.support.sample_corpus import make_image, make_pdf, sample_lines  # noqa: E402

BUCKET = "bench"
PAGES_PER_PDF = 5
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class MemorySampler(threading.Thread):
    """Samples the total PSS of this process and its descendants (not `exclude`) every `pss_period_s`,
    and the CPU seconds other processes on the machine used meanwhile (a noise gauge: shared machine),
    from CPU counters read every `period_s`.

    PSS is read less often because it is what costs: the kernel walks every page table of the tree
    for `smaps_rollup`. Read every 0.5 s it took 55% of this script's py-spy samples (2026-12-01),
    on the cores the pipeline under test runs on. Reading it every 2 s did not move the 1,000-page
    figure beyond the run-to-run spread (188 s against 179-192 s the same day), so the earlier
    figures stand; the peak is the same within 1%."""

    def __init__(self, exclude: set[int], period_s: float = 0.5, pss_period_s: float = 2.0):
        super().__init__(daemon=True)
        self.exclude = exclude
        self.period_s = period_s
        self.pss_every = max(1, round(pss_period_s / period_s))
        self.peak_bytes = 0
        self._halt = threading.Event()
        self._own_cpu: dict[int, float] = {}
        self._busy_start = machine_busy_s()
        self._cpu_at_start = {pid: self.cpu_s(pid) for pid in [*self.tree(), *exclude]}
        self.others_cpu_s = 0.0

    def tree(self) -> list[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
        members, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in members and pid not in self.exclude:
                    members.add(pid)
                    frontier.append(pid)
        return sorted(members)

    @staticmethod
    def pss_bytes(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @staticmethod
    def cpu_s(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def run(self) -> None:
        ticks = 0
        while not self._halt.wait(self.period_s):
            tree = self.tree()
            if ticks % self.pss_every == 0:
                self.peak_bytes = max(self.peak_bytes, sum(self.pss_bytes(pid) for pid in tree))
            ticks += 1
            for pid in [*tree, *self.exclude]:
                self._own_cpu[pid] = max(self._own_cpu.get(pid, 0.0), self.cpu_s(pid))

    def stop(self) -> int:
        self._halt.set()
        self.join()
        own = sum(cpu - self._cpu_at_start.get(pid, 0.0) for pid, cpu in self._own_cpu.items())
        self.others_cpu_s = max(0.0, machine_busy_s() - self._busy_start - own)
        return self.peak_bytes


def start_moto() -> tuple[subprocess.Popen, str]:
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **CREDENTIALS},
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    for line in process.stdout:
        match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, match.group(1)
        if time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("moto_server did not start")


def write_corpus(client, prefix: str, pages: int) -> None:
    """`pages` pages: half from five-page PDFs, half single images (PNG and JPEG, 800x600)."""
    import random

    rng = random.Random(pages)
    pdf_pages = pages // 2
    for i in range(pdf_pages // PAGES_PER_PDF):
        body = make_pdf(
            [[f"Document {i} page {p + 1}", *sample_lines(rng, 12)] for p in range(PAGES_PER_PDF)]
        )
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/pdfs/doc-{i:05d}.pdf", Body=body)
    for i in range(pages - (pdf_pages // PAGES_PER_PDF) * PAGES_PER_PDF):
        image_format = "png" if i % 2 else "jpeg"
        body = make_image(800, 600, image_format, seed=i)
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/images/img-{i:05d}.{image_format}", Body=body)


def bench_overrides(max_tokens: int, num_cpus: int, inference_actors: int, sizes: int) -> dict:
    """What the bench changes in the demo profile (also applied to a checked-out tree's profile)."""
    return {
        "ray": {"num_cpus": num_cpus},
        "sizes": sizes,
        # One size: the pipeline and the loop run the same engine. More: the feature scorer routes.
        "router": {"enabled": sizes > 1, "scorer": "features", "policy": "thresholds"},
        "batch": {
            "tasks": {"max_tokens": {"describe": max_tokens}},
            "rows_per_file": 128,
            "progress_interval_s": 15,
            "default_pool": {
                "min_actors": inference_actors,
                "max_actors": inference_actors,
                "batch_size": 8,
                "concurrent_tasks_per_actor": 2,
                "num_cpus": 1,
            },
            "cpu_stages": {
                "reader_min_actors": 1,
                "reader_max_actors": 2,
                "num_cpus": 0.5,
            },
        },
    }


def equal_share_cuts(scores: list[float], sizes: int) -> list[float]:
    """Three thresholds at the scores' quantiles, so each of `sizes` routed sizes gets rows.

    Equal shares where ties allow: each cut takes at least one more distinct score, then as many as
    fit the remaining rows' fair share (many pages can tie, e.g. every image with the same prompt).
    """
    counts = Counter(scores)
    values = sorted(counts)
    cuts: list[float] = []
    taken = index = 0
    for remaining in range(sizes, 1, -1):
        if index >= len(values) - 1:
            break
        target = taken + (len(scores) - taken) / remaining
        taken += counts[values[index]]
        index += 1
        while index < len(values) - (remaining - 1) and taken + counts[values[index]] <= target:
            taken += counts[values[index]]
            index += 1
        cuts.append((values[index - 1] + values[index]) / 2)
    cuts += [1.0] * (3 - len(cuts))
    return [round(min(1.0, c), 6) for c in cuts]


def spread_thresholds(config: ClusterConfig, endpoint: str, prefix: str) -> ClusterConfig:
    """The config with router thresholds at this corpus's difficulty quantiles, so each routed size
    gets rows (scored on the light rows, the way the job scores them)."""
    sizes = [m.size for m in config.enabled_models()]
    if len(sizes) < 2:
        return config
    scores = page_scores(config, f"s3://{BUCKET}/{prefix}/", endpoint)
    data = config.model_dump(mode="json")
    data["router"]["thresholds"] = equal_share_cuts(scores, len(sizes))
    return parse_config(data)


class TreeJob:
    """The batch job of the whole project at git `ref` (engine, router and pipeline), extracted into
    `scratch` and run in a subprocess through bench/batch_tree.py, with its own demo checkpoints.

    It measures the product as it was at `ref`, where `head_pipeline` swaps only `pipelines/`.
    """

    def __init__(self, scratch: Path, ref: str, overrides: dict):
        self.tree = scratch / "tree"
        self.tree.mkdir(parents=True)
        export_tree(ref, self.tree)
        self.overrides = {**overrides, "cache_dir": str(scratch / "models")}
        self.driver = Path(__file__).with_name("batch_tree.py")
        self.call("demo-models")

    def call(self, command: str, *places: str, router: dict | None = None) -> str:
        overrides = {**self.overrides, "router": {**self.overrides["router"], **(router or {})}}
        overrides_path = self.tree / "bench-overrides.json"
        overrides_path.write_text(json.dumps(overrides))
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        process = subprocess.Popen(
            [sys.executable, str(self.driver), command, str(overrides_path), *places],
            cwd=self.tree,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        last = ""
        for line in process.stdout:
            last = line
            if command == "run" and not line.startswith("{"):
                print(line, end="", flush=True)
        if process.wait() != 0:
            raise RuntimeError(
                f"bench/batch_tree.py {command} failed in {self.tree} (exit {process.returncode})"
            )
        return last

    def thresholds(self, endpoint: str, prefix: str) -> list[float]:
        scores = json.loads(self.call("scores", f"s3://{BUCKET}/{prefix}/", endpoint))
        return equal_share_cuts(scores, self.overrides["sizes"])


def head_pipeline(scratch: Path, ref: str = "HEAD") -> ModuleType:
    """The `pipelines` package at git `ref`, copied into `scratch/pipelines_head` and imported; Ray
    workers find it through PYTHONPATH (set before Ray starts)."""
    repo = Path(__file__).resolve().parent.parent
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", ref, "pipelines/"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    package = scratch / "pipelines_head"
    package.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not name.endswith(".py"):
            continue
        source = subprocess.run(
            ["git", "show", f"{ref}:{name}"], cwd=repo, check=True, capture_output=True, text=True
        ).stdout
        source = re.sub(r"\b(from|import) pipelines\.", r"\1 pipelines_head.", source)
        (package / Path(name).name).write_text(source)
    sys.path.insert(0, str(scratch))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(scratch), str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return importlib.import_module("pipelines_head.job")


def run_pipeline(
    job: ModuleType, config: ClusterConfig, endpoint: str, prefix: str, moto_pid: int, output: str
) -> dict:
    spec = job.BatchJobSpec(
        f"s3://{BUCKET}/{prefix}/",
        f"s3://{BUCKET}/{output}/",
        "describe",
        config,
        run_date=date(2026, 11, 22),
        s3_endpoint=endpoint,
    )
    sampler = MemorySampler(exclude={moto_pid})
    sampler.start()
    summary = job.run_batch_job(spec, emit=lambda line: print("   ", line, flush=True))
    peak = sampler.stop()
    return pipeline_figures(summary.to_dict(), peak, sampler)


def run_tree(
    tree: TreeJob, thresholds: list[float], endpoint: str, prefix: str, moto_pid: int, output: str
) -> dict:
    """`run_pipeline` for the project at another commit (its job runs in a child process, which the
    memory sampler counts as part of this process tree)."""
    sampler = MemorySampler(exclude={moto_pid})
    sampler.start()
    summary = tree.call(
        "run",
        f"s3://{BUCKET}/{prefix}/",
        f"s3://{BUCKET}/{output}/",
        endpoint,
        router={"thresholds": thresholds},
    )
    peak = sampler.stop()
    return pipeline_figures(json.loads(summary), peak, sampler)


def pipeline_figures(data: dict, peak: int, sampler: MemorySampler) -> dict:
    return {
        "pages": data["run"]["pages"],
        "rows": data["run"]["rows"],
        "errors": data["run"]["errors"],
        "elapsed_s": data["elapsed_s"],
        "pages_per_s": data["pages_per_s"],
        "tokens_per_s": data["tokens_per_s"],
        "completion_tokens": data["run"]["completion_tokens"],
        "rows_by_model": data["run"].get("rows_by_model"),
        "peak_pss_mib": peak / 2**20,
        "other_processes_cpu_s": sampler.others_cpu_s,
    }


async def run_loop(config: ClusterConfig, endpoint: str, prefix: str, moto_pid: int) -> dict:
    """The same work, one page and one request at a time, in this process."""
    from deployments.engines.base import GenerationRequest, SamplingParams
    from deployments.engines.factory import create_engine

    plan = plan_job(
        BatchJobSpec(f"s3://{BUCKET}/{prefix}/", "/unused", "describe", config, s3_endpoint=endpoint)
    )
    settings = plan.expansion_settings()
    storage = Storage(plan.storage_options)
    expander = DocumentExpander(storage, settings, DoneIndex())
    model = plan.models[0]
    engine = create_engine(model, config.cache_dir)
    await engine.start()
    sampler = MemorySampler(exclude={moto_pid})
    sampler.start()
    pages = tokens = errors = 0
    started = time.perf_counter()
    for info in storage.list_files(plan.input):
        item = {
            "uri": info.location.uri,
            "doc_id": info.location.relative_to(plan.input),
            "size": info.size,
            "kind": kind_from_name(info.location.name),
        }
        for row in expander.expand(item):
            if row["kind"] == KIND_IMAGE:
                row["image"] = fit_image(
                    row["image"],
                    target_pixels=settings.target_pixels,
                    max_pixels=config.batch.max_image_pixels,
                    image_format=settings.image_format,
                )
            request = GenerationRequest(
                request_id=f"{row['doc_id']}#{row['page']}",
                sampling=SamplingParams(max_tokens=plan.catalog.max_tokens("describe")),
                messages=plan.catalog.messages(row),
                enable_thinking=config.batch.enable_thinking,
            )
            last = None
            async for delta in engine.chat(request):
                last = delta
            pages += 1
            tokens += last.prompt_tokens + last.completion_tokens if last else 0
            errors += last is None
    elapsed = time.perf_counter() - started
    peak = sampler.stop()
    await engine.shutdown()
    return {
        "pages": pages,
        "errors": errors,
        "elapsed_s": elapsed,
        "pages_per_s": pages / elapsed,
        "tokens_per_s": tokens / elapsed,
        "peak_pss_mib": peak / 2**20,
        "other_processes_cpu_s": sampler.others_cpu_s,
    }


def main() -> int:
    if "--peer" in sys.argv:
        # `--peer ray-data-llm [its options]`: text rows against Ray Data LLM (bench/ray_data_llm_peer.py).
        at = sys.argv.index("--peer")
        peer = sys.argv[at + 1] if at + 1 < len(sys.argv) else ""
        if peer != "ray-data-llm":
            sys.exit(f"--peer: the only peer is ray-data-llm, got {peer!r}")
        sys.argv[at : at + 2] = []
        import ray_data_llm_peer

        return ray_data_llm_peer.main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="1000", help="corpus sizes for the pipeline, comma-separated")
    parser.add_argument("--sizes", type=int, default=4, choices=(1, 2, 3, 4), help="model sizes routed over")
    parser.add_argument(
        "--baseline",
        choices=("head", "tree", "none"),
        default="head",
        help="also run the pipeline committed at a ref (`head`: its pipelines/ only; `tree`: the whole project)",
    )
    parser.add_argument("--baseline-ref", default="HEAD", help="the git ref `--baseline head` runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each pipeline per corpus size")
    parser.add_argument("--loop-pages", type=int, default=0, help="corpus size for the loop (0 skips it)")
    parser.add_argument("--max-tokens", type=int, default=16, help="completion tokens per page")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs of the local Ray")
    parser.add_argument("--inference-actors", type=int, default=1, help="actors in each size's pool")
    parser.add_argument(
        "--layout",
        choices=("profile", "colocated", "per-size"),
        default="profile",
        help="the working tree's engine placement in routed jobs (batch.colocate_sizes)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    corpus_sizes = [int(size) for size in args.pages.split(",") if size]
    os.environ.update(CREDENTIALS)
    overrides = bench_overrides(args.max_tokens, args.num_cpus, args.inference_actors, args.sizes)
    config = demo_config(overrides)
    if args.layout != "profile":
        batch = config.batch.model_copy(update={"colocate_sizes": args.layout == "colocated"})
        config = config.model_copy(update={"batch": batch})
    print(f"working tree layout: {'colocated' if config.batch.colocate_sizes else 'per-size'}", flush=True)
    from deployments.engines.demo_models import ensure_demo_models

    ensure_demo_models(config.cache_dir, sizes=[m.size for m in config.enabled_models()])
    scratch = tempfile.TemporaryDirectory(prefix="bench-head-")
    pipelines: dict[str, ModuleType | TreeJob] = {"working tree": current_job}
    if args.baseline == "head":
        pipelines["HEAD"] = head_pipeline(Path(scratch.name), args.baseline_ref)
    elif args.baseline == "tree":
        pipelines["HEAD"] = TreeJob(Path(scratch.name), args.baseline_ref, overrides)
    moto, endpoint = start_moto()
    results: dict = {
        "cpu_count": os.cpu_count(),
        "max_tokens": args.max_tokens,
        "sizes": args.sizes,
        "pipeline": {},
        "loop": None,
    }
    runs: list[tuple[str, int, dict]] = []
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for pages in sorted(set(corpus_sizes) | ({args.loop_pages} if args.loop_pages else set())):
            write_corpus(client, f"corpus-{pages}", pages)
        for pages in corpus_sizes:
            prefix = f"corpus-{pages}"
            routed = spread_thresholds(config, endpoint, prefix)
            print(f"thresholds for {pages} pages: {routed.router.thresholds}", flush=True)
            tree = pipelines.get("HEAD")
            if isinstance(tree, TreeJob):
                tree_thresholds = tree.thresholds(endpoint, prefix) if args.sizes > 1 else [0.25, 0.5, 0.75]
                print(f"thresholds at {args.baseline_ref} for {pages} pages: {tree_thresholds}", flush=True)
            for attempt in range(args.repeat):
                for name, job in pipelines.items():
                    print(f"{name} pipeline over {pages} pages (run {attempt + 1}) ...", flush=True)
                    output = f"results-{name.replace(' ', '-')}-{pages}-{attempt}"
                    if isinstance(job, TreeJob):
                        figures = run_tree(job, tree_thresholds, endpoint, prefix, moto.pid, output)
                    else:
                        figures = run_pipeline(job, routed, endpoint, prefix, moto.pid, output)
                    print("   ", json.dumps(figures), flush=True)
                    runs.append((name, pages, figures))
                    results["pipeline"].setdefault(name, {}).setdefault(pages, []).append(figures)
        if args.loop_pages:
            print(f"sequential loop over {args.loop_pages} pages ...", flush=True)
            results["loop"] = asyncio.run(run_loop(config, endpoint, f"corpus-{args.loop_pages}", moto.pid))
            print("   ", json.dumps(results["loop"]), flush=True)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=30)
        scratch.cleanup()
    header = f"{'run':<18}{'pages':>7}{'seconds':>9}{'pages/s':>9}{'tokens/s':>10}{'peak PSS MiB':>14}"
    print(f"\n{header}{'others CPU s':>14}")
    rows = [(f"{name}", figures) for name, _, figures in runs]
    if results["loop"]:
        rows.append(("sequential loop", results["loop"]))
    for name, figures in rows:
        print(
            f"{name:<18}{figures['pages']:>7}{figures['elapsed_s']:>9.1f}{figures['pages_per_s']:>9.2f}"
            f"{figures['tokens_per_s']:>10.0f}{figures['peak_pss_mib']:>14.0f}{figures['other_processes_cpu_s']:>14.0f}"
        )
    if "HEAD" in results["pipeline"]:
        for pages in corpus_sizes:
            new = statistics.median(f["pages_per_s"] for f in results["pipeline"]["working tree"][pages])
            old = statistics.median(f["pages_per_s"] for f in results["pipeline"]["HEAD"][pages])
            new_mem = max(f["peak_pss_mib"] for f in results["pipeline"]["working tree"][pages])
            old_mem = max(f["peak_pss_mib"] for f in results["pipeline"]["HEAD"][pages])
            results.setdefault("ratio_vs_head", {})[pages] = new / old
            print(
                f"working tree / HEAD at {pages} pages, {args.sizes} sizes: {new / old:.2f}x pages/s "
                f"(median of {args.repeat}), peak PSS {new_mem:.0f} vs {old_mem:.0f} MiB"
            )
    same = results["pipeline"]["working tree"].get(args.loop_pages)
    if results["loop"] and same:
        results["speedup"] = same[0]["pages_per_s"] / results["loop"]["pages_per_s"]
        print(f"pipeline / loop at {args.loop_pages} pages: {results['speedup']:.2f}x pages/s")
    print("others CPU s: CPU seconds other processes on this shared machine used during the run")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
