"""This project's OpenAI server side by side with peer servers on the same Qwen3.5-architecture checkpoint.

    python bench/compare_servers.py [--servers project,project-vllm,vllm] [--rounds 2] [--seconds 10]
                                    [--checkpoint demo|realsize] [--workloads c1,c8,...]
                                    [--vllm-venv .venv-vllm] [--project-ref REF] [--replicas N]
                                    [--torch-threads N] [--json FILE]

The script starts every server itself, one at a time, on a free loopback port, and drives each with
the same load generator (aiohttp, keep-alive connections, closed loop: each of `c` clients sends its
next request when the previous one finished). With `--rounds N` the whole list runs N times in turn
(A, B, A, B, ...), so slow drift of a shared machine falls on every server alike; every round's
figures and ratios are printed.

- `project`: `qwen-cluster up` serving the one 0.8b size (router off) on the transformers engine,
  with `--replicas` replicas (default: one per core of the host; `ref` gets `--ref-replicas`). A
  one-size cluster runs HTTP, tokenizing and the engine loop in each replica's one process, whose
  Python holds about one core whatever the host has; `vllm serve` splits its API server and engine
  core into two processes. `--replicas 1` gives the figures recorded before 2026-12-07.
  `--torch-threads N` gives its engines N torch threads each (the demo profile's 1 otherwise; `ref`
  keeps its tree's profile).
- `project-vllm`: the same, with `engine.kind: vllm`, run from the vLLM venv (`make test-vllm`'s
  .venv-vllm: vLLM's CPU build).
- `vllm`: `vllm serve` from that venv, with the engine settings `project-vllm` uses (bfloat16, eager
  mode unless `--vllm-compile`, prefix caching off, the same max model length and KV cache).
- `transformers`: `transformers serve` from this venv, on a text-only copy of the checkpoint.
- `ref`: this project as committed at `--project-ref`, exported from git and started with its own
  `qwen-cluster up`, on the run's checkpoint and dtype: the product as it was, measured in the same run.
- `ref-vllm`: the same on the vLLM engine, from the vLLM venv (as `project-vllm`).

Checkpoints: `demo` is the tiny random-weight demo 0.8b (serving overhead dominates); `realsize` is
a random-weight checkpoint with the real Qwen3.5-0.8B text dimensions (bench/realsize_checkpoint.py;
model compute dominates). Every server runs it in bfloat16 (`--dtype`): vLLM's CPU Gated DeltaNet
kernel needs it.

Workloads (chat, `enable_thinking` off, temperature 0.7):
- uniform c1 / c8 / c32 / c128, max_tokens 8: requests/s;
- `ttft c1`: one streamed client, max_tokens 8: time to first token p50 (what a server adds);
- `short c16`: 16 streamed clients, max_tokens 8: time to first token p50 / p99;
- `mixed c16`: streamed, 1 client in 8 asks 256 tokens, the rest 8: the short ones' TTFT p50 / p99;
- `decode c32x128`: c32 x max_tokens 128: output tokens/s (completion tokens from `usage`).
Ratios are each server against `--baseline` (default `vllm`): throughput server / baseline (above 1:
faster), latency server / baseline (below 1: sooner). Whatever a server could not do is reported
with its error. Other work on the machine moves the figures: compare within a run. For ratios that
the machine's drift between servers' turns does not move, bench/paired_servers.py keeps two of these
servers up and alternates short periods between them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

PROMPT = "Give me a short greeting."
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Processor files the text-only copy leaves out (loading them needs torchvision).
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")
WORKLOADS = ("c1", "c8", "c32", "c128", "ttft c1", "short c16", "mixed c16", "decode c32x128")


def free_port() -> int:
    """A port nobody listens on, from the range local clusters choose from (below the kernel's
    ephemeral range, which the servers' own processes draw from: cluster/local_haproxy.py)."""
    from cluster.local_haproxy import free_port as cluster_free_port

    return cluster_free_port()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class Server:
    """One running server (or why it is not running)."""

    name: str
    base_url: str = ""
    model: str = ""
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    error: str | None = None

    def log_tail(self, lines: int = 6) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def launch(name: str, command: list[str], env: dict[str, str], scratch: Path, cwd: Path = REPO) -> Server:
    log_path = scratch / f"{name.replace('@', '-')}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    return Server(name=name, process=process, log_path=log_path)


async def wait_ready(server: Server, timeout_s: float) -> None:
    """Wait until a chat completion succeeds; set `error` if the server exits or never answers one.
    (No model-list probe: `transformers serve` lists models by scanning the hub cache, which fails
    without one.)"""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                server.error = f"exited with {server.process.returncode}: {server.log_tail()}"
                return
            try:
                status, text = await chat_once(session, server, 4)
                if status == 200:
                    return
                last = f"chat answered {status}: {text[:300]}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
                last = f"{type(error).__name__}: {error}"
            await asyncio.sleep(1.0)
    server.error = f"not ready after {timeout_s:.0f} s ({last}): {server.log_tail()}"


def body(model: str, max_tokens: int, stream: bool) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "stream": stream,
        "chat_template_kwargs": {"enable_thinking": False},
    }


async def chat_once(session: aiohttp.ClientSession, server: Server, max_tokens: int) -> tuple[int, str]:
    async with session.post(
        f"{server.base_url}/v1/chat/completions", json=body(server.model, max_tokens, False)
    ) as response:
        return response.status, await response.text()


@dataclass
class LevelResult:
    """One workload on one server."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    short_ttfts: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    statuses: Counter = field(default_factory=Counter)
    # The first error body of each status.
    examples: dict = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def failed(self, what: str, status, text: str) -> None:
        self.statuses[status] += 1
        self.examples.setdefault(status, f"{what}: {status} {text[:300]}")


async def one_request(
    session: aiohttp.ClientSession,
    server: Server,
    max_tokens: int,
    stream: bool,
    result: LevelResult,
    short: bool,
) -> None:
    started = time.perf_counter()
    url = f"{server.base_url}/v1/chat/completions"
    try:
        async with session.post(url, json=body(server.model, max_tokens, stream)) as response:
            if response.status != 200:
                result.failed(f"max_tokens {max_tokens}", response.status, await response.text())
                return
            if not stream:
                payload = await response.json(content_type=None)
                result.completion_tokens += int((payload.get("usage") or {}).get("completion_tokens") or 0)
            else:
                first = None
                async for line in response.content:
                    if first is None and line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                        chunk = json.loads(line[6:])
                        choices = chunk.get("choices") or [{}]
                        if (choices[0].get("delta") or {}).get("content"):
                            first = time.perf_counter() - started
                if short and first is not None:
                    result.short_ttfts.append(first)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as error:
        result.failed(f"max_tokens {max_tokens}", type(error).__name__, str(error))
        return
    result.statuses[200] += 1
    result.latencies.append(time.perf_counter() - started)


async def run_level(
    server: Server,
    concurrency: int,
    seconds: float,
    max_tokens: int,
    long_every: int = 0,
    stream: bool = False,
) -> LevelResult:
    """Closed loop: `concurrency` clients for `seconds`; client i asks 256 tokens when
    `long_every` divides i (the mixed workload), else `max_tokens`."""
    result = LevelResult()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + seconds

        async def client(index: int) -> None:
            long = bool(long_every) and index % long_every == 0
            while time.perf_counter() < deadline:
                await one_request(session, server, 256 if long else max_tokens, stream, result, not long)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def measure(server: Server, seconds: float, workloads: list[str]) -> dict[str, dict]:
    """Run each chosen workload for `seconds` against `server`."""
    figures: dict[str, dict] = {}
    for workload in workloads:
        if workload.startswith("c") and workload[1:].isdigit():
            level = await run_level(server, int(workload[1:]), seconds, 8)
            figures[workload] = summarize(level, "req/s", level.ok / level.seconds)
        elif workload in ("ttft c1", "short c16", "mixed c16"):
            concurrency = 1 if workload == "ttft c1" else 16
            long_every = 8 if workload == "mixed c16" else 0
            level = await run_level(server, concurrency, seconds, 8, long_every=long_every, stream=True)
            ttfts = level.short_ttfts
            figures[workload] = summarize(
                level, "TTFT p50/p99 ms", (1e3 * percentile(ttfts, 0.5), 1e3 * percentile(ttfts, 0.99))
            )
        elif workload == "decode c32x128":
            level = await run_level(server, 32, seconds, 128)
            figures[workload] = summarize(level, "output tok/s", level.completion_tokens / level.seconds)
        else:
            raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    return figures


def summarize(level: LevelResult, unit: str, value) -> dict:
    errors = {str(k): v for k, v in level.statuses.items() if k != 200}
    return {
        "unit": unit,
        "value": value if level.ok else None,
        "ok": level.ok,
        "errors": errors,
        "examples": level.examples,
        "p50_latency_s": percentile(level.latencies, 0.5),
    }


# ---- servers --------------------------------------------------------------------------------------
# Run in a tree of this project (this one, or an export at a ref), so the profile is that tree's own:
# the demo profile cut down to the 0.8b size, as the peers serve one model, with the engine settings
# given as JSON (empty for `ref`, whose config may not know today's fields).
DEMO_CUT_SCRIPT = """
import json, sys, yaml
from cluster.config import load_config
path, cache, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Optional: engine overrides as JSON, a checkpoint path and a replica count (bench/cpu_per_request.py
# passes none of them).
engine = sys.argv[4] if len(sys.argv) > 4 else "{}"
checkpoint = sys.argv[5] if len(sys.argv) > 5 else ""
replicas = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else 0
data = load_config(profile="demo").model_dump(mode="json")
data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
data["models"][0]["engine"].update(json.loads(engine))
if checkpoint:
    data["models"][0].update(checkpoint=checkpoint, random_weights=False)
if replicas:
    data["models"][0]["deployment"].pop("autoscaling_config", None)
    data["models"][0]["deployment"]["num_replicas"] = replicas
data["router"]["enabled"] = False
# `vllm serve` has no request time limit: a c32 x 128 decode of the real-size checkpoint takes minutes.
data["serving"].get("ingress", {})["request_timeout_s"] = 900.0
data["cache_dir"] = cache
data["serving"]["port"] = port
open(path, "w").write(yaml.safe_dump(data, sort_keys=False))
"""


@dataclass
class ServeSettings:
    """What every server of one run shares: checkpoint, dtype and vLLM's engine settings."""

    checkpoint: Path
    is_demo: bool
    dtype: str
    max_model_len: int
    eager: bool
    vllm_python: Path
    kvcache_gib: str
    replicas: int = 0
    ref_replicas: int = 0
    torch_threads: int | None = None

    def vllm_env(self) -> dict[str, str]:
        return {
            "VLLM_CPU_KVCACHE_SPACE": self.kvcache_gib,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }


def demo_settings(checkpoint: Path) -> ServeSettings:
    """The default run's settings on the demo `checkpoint`: bf16, 4,096 tokens, vLLM in eager mode
    with a 2 GiB KV cache, vLLM from `.venv-vllm` (what `main` builds without options)."""
    return ServeSettings(
        checkpoint=checkpoint,
        is_demo=True,
        dtype="bfloat16",
        max_model_len=4096,
        eager=True,
        vllm_python=REPO / ".venv-vllm" / "bin" / "python",
        kvcache_gib="2",
    )


def project_up(
    name: str,
    tree: Path,
    cache: Path,
    scratch: Path,
    env: dict[str, str],
    python: Path,
    engine: dict,
    checkpoint: str,
    replicas: int = 0,
) -> Server:
    """`qwen-cluster up` of the project in `tree` on its own demo profile, cut by `DEMO_CUT_SCRIPT`
    (with `replicas` replicas of the size, or the profile's count when 0)."""
    port = free_port()
    config_path = scratch / f"{name.replace('@', '-')}.yaml"
    # A busy shared machine can take longer than Ray's default 60 s to register the raylet.
    env = {**env, "QWEN_CLUSTER_CACHE": str(cache), "RAY_raylet_start_wait_time_s": "180"}
    made = subprocess.run(
        [
            str(python),
            "-c",
            DEMO_CUT_SCRIPT,
            str(config_path),
            str(cache),
            str(port),
            json.dumps(engine),
            checkpoint,
            str(replicas or ""),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        return Server(name=name, error=f"its demo config could not be written: {made.stderr.strip()[-300:]}")
    command = [str(python), "-m", "cluster.cli", "up", "--config", str(config_path), "--host", "127.0.0.1"]
    server = launch(name, command, env, scratch, cwd=tree)
    server.base_url, server.model = f"http://127.0.0.1:{port}", "qwen3.5-0.8b"
    return server


def transformers_cut(settings: ServeSettings | None) -> tuple[dict, str]:
    """The engine overrides and checkpoint a transformers-engine server of this project gets: the
    run's dtype and (unless the demo) checkpoint, or nothing, so the tree's demo profile decides."""
    if settings is None:
        return {}, ""
    checkpoint = "" if settings.is_demo else str(settings.checkpoint)
    return {"kind": "transformers", "dtype": settings.dtype}, checkpoint


def project_server(cache: Path, scratch: Path, settings: ServeSettings | None = None) -> Server:
    """This project's `qwen-cluster up` (the working tree) on the transformers engine: with this
    run's checkpoint and dtype, or (no `settings`, as bench/cpu_per_request.py calls it) on the demo
    profile's own engine settings."""
    engine, checkpoint = transformers_cut(settings)
    if settings is not None and settings.torch_threads:
        engine["torch_threads"] = settings.torch_threads
    replicas = settings.replicas if settings is not None else 0
    return project_up(
        "project", REPO, cache, scratch, dict(os.environ), Path(sys.executable), engine, checkpoint, replicas
    )


def project_vllm_server(
    cache: Path, scratch: Path, settings: ServeSettings, ref: str | None = None, replicas: int = 0
) -> Server:
    """This project's `qwen-cluster up` with `engine.kind: vllm`, from the vLLM venv: the working
    tree, or (`ref`) the project as committed there, exported from git; `replicas` replicas of the
    size (the profile's count when 0)."""
    name = "project-vllm" if ref is None else f"project-vllm@{ref}"
    if not settings.vllm_python.exists():
        return Server(name=name, error=f"no {settings.vllm_python}: run `make test-vllm` (or setup.sh)")
    checkpoint = "" if settings.is_demo else str(settings.checkpoint)
    engine = {
        "kind": "vllm",
        "dtype": settings.dtype,
        "max_model_len": settings.max_model_len,
        "engine_kwargs": {"enforce_eager": settings.eager},
    }
    env = {**os.environ, **settings.vllm_env()}
    env.pop("PYTHONPATH", None)
    tree = REPO
    if ref is not None:  # the exported tree's modules before the venv's install of this one
        tree, cache = exported_tree(ref, scratch), scratch / f"cache-{ref}"
        env["PYTHONPATH"] = str(tree)
    return project_up(name, tree, cache, scratch, env, settings.vllm_python, engine, checkpoint, replicas)


def exported_tree(ref: str, scratch: Path) -> Path:
    """The project as committed at `ref`, exported once per run under `scratch`."""
    from git_tree import export_tree

    tree = scratch / f"tree-{ref}"
    if not tree.exists():
        tree.mkdir()
        export_tree(ref, tree)
    return tree


def project_at_ref(ref: str, scratch: Path, settings: ServeSettings | None = None) -> Server:
    """This project as committed at `ref`, started from a git export of that commit with this venv's
    packages, cut as `project_server` cuts the working tree: with this run's checkpoint and dtype,
    or (no `settings`) on its own demo profile's engine settings. A ref whose config lacks those
    fields fails to write its config, and the run reports it."""
    tree = exported_tree(ref, scratch)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    engine, checkpoint = transformers_cut(settings)
    return project_up(
        f"project@{ref}",
        tree,
        scratch / f"cache-{ref}",
        scratch,
        env,
        Path(sys.executable),
        engine,
        checkpoint,
        settings.ref_replicas if settings is not None else 0,
    )


def text_only_copy(checkpoint: Path, target: Path) -> Path:
    """The checkpoint as a text-only model: its `text_config` as a `Qwen3_5ForCausalLM` config, the
    language model's weights (`model.language_model.*` -> `model.*`, plus `lm_head`), the tokenizer
    and chat template; no vision tower and no processor files (loading those needs torchvision)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if (target / "model.safetensors").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    full = json.loads((checkpoint / "config.json").read_text())
    text = dict(full["text_config"])
    text.update(architectures=["Qwen3_5ForCausalLM"], model_type=text.get("model_type", "qwen3_5_text"))
    text.setdefault("tie_word_embeddings", full.get("tie_word_embeddings", False))
    (target / "config.json").write_text(json.dumps(text, indent=2))
    tensors = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith("model.language_model."):
                    tensors["model." + key.removeprefix("model.language_model.")] = weights.get_tensor(key)
                elif key.startswith("lm_head."):
                    tensors[key] = weights.get_tensor(key)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    for path in checkpoint.iterdir():
        weights = path.name.endswith((".safetensors", ".index.json"))
        if path.is_file() and path.name not in PROCESSOR_FILES and path.name != "config.json" and not weights:
            shutil.copy2(path, target / path.name)
    return target


def transformers_server(scratch: Path, settings: ServeSettings) -> Server:
    model_dir = text_only_copy(settings.checkpoint, scratch / "text-only-0.8b")
    port = free_port()
    command = [str(VENV_BIN / "transformers"), "serve", str(model_dir), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu", "--reasoning", "off", "--dtype", settings.dtype]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = launch("transformers", command, env, scratch)
    server.base_url, server.model = f"http://127.0.0.1:{port}", str(model_dir)
    return server


def vllm_server(scratch: Path, settings: ServeSettings) -> Server:
    """`vllm serve` with the engine settings the project's vLLM engine uses."""
    if not settings.vllm_python.exists():
        return Server(name="vllm", error=f"no {settings.vllm_python}: run `make test-vllm` (or setup.sh)")
    port = free_port()
    # vLLM's CLI through the CPU build's launcher (it answers the CLI's version and device questions).
    command = [str(settings.vllm_python), str(REPO / "infra" / "vllm-cpu" / "vllm_cli.py"), "serve"]
    command += [str(settings.checkpoint), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--dtype", settings.dtype, "--max-model-len", str(settings.max_model_len)]
    command += ["--served-model-name", "qwen3.5-0.8b", "--no-enable-prefix-caching"]
    command += ["--reasoning-parser", "qwen3", "--limit-mm-per-prompt", '{"image": 4, "video": 0}']
    if settings.eager:
        command.append("--enforce-eager")
    env = {**os.environ, **settings.vllm_env()}
    env.pop("PYTHONPATH", None)
    server = launch("vllm", command, env, scratch)
    server.base_url, server.model = f"http://127.0.0.1:{port}", "qwen3.5-0.8b"
    return server


# ---- report ---------------------------------------------------------------------------------------
def cell(figure: dict | None) -> str:
    if figure is None:
        return "-"
    value = figure["value"]
    if value is None:
        return "failed"
    text = f"{value[0]:.0f} / {value[1]:.0f}" if isinstance(value, tuple | list) else f"{value:.1f}"
    return text + (" (errors)" if figure["errors"] else "")


def both_measured(figure: dict | None, baseline: dict | None) -> bool:
    """Whether a server and the baseline both produced a figure for one workload."""
    return bool(figure and baseline) and figure["value"] is not None and baseline["value"] is not None


def ratio(figure: dict | None, baseline: dict | None) -> str:
    """server / baseline: throughput above 1 is faster; latency (p50 / p99) below 1 is sooner."""
    if not both_measured(figure, baseline):
        return "-"
    a, b = figure["value"], baseline["value"]
    if isinstance(a, tuple | list):
        return f"{a[0] / b[0]:.2f}x / {a[1] / b[1]:.2f}x" if b[0] and b[1] else "-"
    return f"{a / b:.2f}x" if b else "-"


def added_ms(figure: dict | None, baseline: dict | None) -> str:
    """server p50 minus baseline p50, in ms (for `ttft c1`: what a server adds to the first token)."""
    if not both_measured(figure, baseline):
        return ""
    return f" ({figure['value'][0] - baseline['value'][0]:+.1f} ms)"


def print_table(title: str, results: dict[str, dict], workloads: list[str], baseline: str) -> None:
    names = list(results)
    others = [n for n in names if n != baseline] if baseline in results else []
    # Columns as wide as their names (a `project-vllm@REF` name is wider than its figures).
    width = {n: max(20, len(n) + 2) for n in names}
    ratio_width = {n: max(32, len(n) + len(baseline) + 5) for n in others}
    header = f"{'workload':<16}{'unit':<17}" + "".join(f"{n:>{width[n]}}" for n in names)
    header += "".join(f"{n + ' / ' + baseline:>{ratio_width[n]}}" for n in others)
    print(f"\n{title}\n{header}")
    for workload in workloads:
        figures = {n: results[n].get(workload) for n in names}
        unit = next((f["unit"] for f in figures.values() if f), "")
        line = f"{workload:<16}{unit:<17}" + "".join(f"{cell(figures[n]):>{width[n]}}" for n in names)
        for name in others:
            text = ratio(figures[name], figures[baseline])
            if workload == "ttft c1":
                text += added_ms(figures[name], figures[baseline])
            line += f"{text:>{ratio_width[name]}}"
        print(line)
    for name, figures in results.items():
        for workload, figure in figures.items():
            if figure.get("errors"):
                print(f"  {name} {workload}: {figure['errors']}")
                for example in figure["examples"].values():
                    print(f"    e.g. {example}")


def round_ratios(rounds: list[dict[str, dict]], name: str, workload: str, baseline: str) -> list[float]:
    """`name` / `baseline` on `workload` in every round where both ran (p50 for latency pairs)."""
    found = []
    for results in rounds:
        mine, theirs = results.get(name, {}).get(workload), results.get(baseline, {}).get(workload)
        if not both_measured(mine, theirs):
            continue
        a, b = mine["value"], theirs["value"]
        a, b = (a[0], b[0]) if isinstance(a, tuple | list) else (a, b)
        if b:
            found.append(a / b)
    return found


def print_summary(rounds: list[dict[str, dict]], workloads: list[str], baseline: str) -> None:
    """Each server's ratio to the baseline per round and their median: on a shared machine one
    round's ratio moves by tens of percent, so a claim rests on the median of several."""
    names = [n for n in dict.fromkeys(n for results in rounds for n in results) if n != baseline]
    if len(rounds) < 2 or not names:
        return
    print(f"\nratios to {baseline} over {len(rounds)} rounds (p50 for latency): each round, then the median")
    for name in names:
        for workload in workloads:
            found = round_ratios(rounds, name, workload, baseline)
            if found:
                each = ", ".join(f"{r:.2f}" for r in found)
                print(f"  {name:<24}{workload:<16}{each:<40}median {statistics.median(found):.2f}x")


async def bench_server(
    server: Server, seconds: float, ready_timeout: float, workloads: list[str]
) -> dict | None:
    started = time.monotonic()
    await wait_ready(server, ready_timeout)
    if server.error:
        return None
    ready_s = time.monotonic() - started
    print(f"{server.name} ready at {server.base_url} after {ready_s:.0f} s; measuring ...", flush=True)
    await run_level(server, 8, min(seconds, 3.0), 8)  # warm-up, not counted
    figures = await measure(server, seconds, workloads)
    figures["start-up"] = {"unit": "s to ready", "value": ready_s, "ok": 1, "errors": {}, "examples": {}}
    for workload, figure in figures.items():
        print(f"   {workload}: {cell(figure)} {figure['unit']}", flush=True)
    return figures


def start_server(name: str, cache: Path, scratch: Path, settings: ServeSettings, ref: str) -> Server:
    if name == "project":
        return project_server(cache, scratch, settings)
    if name == "project-vllm":
        return project_vllm_server(cache, scratch, settings)
    if name == "transformers":
        return transformers_server(scratch, settings)
    if name == "vllm":
        return vllm_server(scratch, settings)
    if name == "ref":
        return project_at_ref(ref, scratch, settings)
    if name == "ref-vllm":
        return project_vllm_server(cache, scratch, settings, ref)
    raise ValueError(f"unknown server {name!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds per workload")
    parser.add_argument(
        "--servers", default="project,project-vllm,vllm", help="which servers, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=1, help="times the server list runs, in turn")
    parser.add_argument("--baseline", default="vllm", help="the server ratios are taken against")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="which workloads, comma-separated")
    parser.add_argument("--checkpoint", choices=("demo", "realsize"), default="demo")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--vllm-compile", action="store_true", help="let vLLM compile (default: eager)")
    parser.add_argument("--kvcache-gib", default="2", help="VLLM_CPU_KVCACHE_SPACE for both vLLM servers")
    parser.add_argument("--vllm-venv", type=Path, default=REPO / ".venv-vllm", help="venv with vllm-cpu")
    parser.add_argument("--project-ref", default="af11872", help="git ref the `ref` server runs")
    parser.add_argument("--ready-timeout", type=float, default=300, help="seconds a server may take to start")
    parser.add_argument(
        "--replicas",
        type=int,
        default=os.cpu_count() or 1,
        help="replicas of the transformers-engine servers (`project`, `ref`; default: the host's cores)",
    )
    parser.add_argument(
        "--ref-replicas", type=int, default=None, help="replicas of the `ref` server (default: --replicas)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads of each `project` engine (default: the profile's)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.ref_replicas is None:
        args.ref_replicas = args.replicas
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    cache = default_cache_dir()
    if args.checkpoint == "demo":
        checkpoint = ensure_demo_models(cache, sizes=["0.8b"])["0.8b"]
    else:
        from realsize_checkpoint import default_path, ensure_realsize_checkpoint

        checkpoint = ensure_realsize_checkpoint(default_path())
    settings = ServeSettings(
        checkpoint=checkpoint,
        is_demo=args.checkpoint == "demo",
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        eager=not args.vllm_compile,
        vllm_python=args.vllm_venv.resolve() / "bin" / "python",
        kvcache_gib=args.kvcache_gib,
        replicas=args.replicas,
        ref_replicas=args.ref_replicas,
        torch_threads=args.torch_threads,
    )
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if args.baseline == "ref":
        args.baseline = f"project@{args.project_ref}"  # the name the `ref` server's figures carry
    elif args.baseline == "ref-vllm":
        args.baseline = f"project-vllm@{args.project_ref}"
    rounds: list[dict[str, dict]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="compare-servers-") as scratch_name:
        scratch = Path(scratch_name)
        for round_index in range(args.rounds):
            results: dict[str, dict] = {}
            for name in names:
                try:
                    server = start_server(name, cache, scratch, settings, args.project_ref)
                except ValueError as error:
                    parser.error(str(error))
                print(f"round {round_index + 1}: starting {server.name} ...", flush=True)
                try:
                    if server.error is None:
                        figures = asyncio.run(
                            bench_server(server, args.seconds, args.ready_timeout, workloads)
                        )
                        if figures is not None:
                            results[server.name] = figures
                finally:
                    server.stop()
                if server.error:
                    errors[server.name] = server.error
                    print(f"{server.name} could not run: {server.error}", flush=True)
            rounds.append(results)
    shown = [*workloads, "start-up"]
    for round_index, results in enumerate(rounds):
        title = (
            f"round {round_index + 1} of {len(rounds)} ({args.checkpoint} checkpoint, {args.dtype}, "
            f"replicas: project {args.replicas}, ref {args.ref_replicas}; "
            f"project torch threads: {args.torch_threads or 'profile'})"
        )
        print_table(title, results, shown, args.baseline)
    print_summary(rounds, workloads, args.baseline)
    print(f"\nratios: server / {args.baseline}; throughput above 1 is faster, latency below 1 is sooner")
    for name, error in errors.items():
        print(f"{name} could not run: {error}")
    if args.json:
        payload = {
            "rounds": rounds,
            "errors": errors,
            "checkpoint": args.checkpoint,
            "dtype": args.dtype,
            "replicas": args.replicas,
            "ref_replicas": args.ref_replicas,
            "torch_threads": args.torch_threads,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
