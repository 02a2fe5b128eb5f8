"""Engine-alone figures for the transformers engine (prints numbers; not a test).

Same run, same demo checkpoint, one torch thread unless `--threads`:
1. 32 prompts x 128 tokens with sampling: plain HF `model.generate(do_sample=True)` vs this engine vs
   the previous static-batching engine (its source taken from git `HEAD` into a temporary module, so
   the ratio is same-run).
2. Mixed c16 (1 in 8 asks 256 tokens, the others 8): short requests' TTFT p50/p99 vs the same short
   requests alone.
3. Decode saturation c32 x 128 tokens: output tokens/s, new vs old.
4. Structured outputs: batch 16 with and without a JSON schema (10 fields, nesting 2), and the
   compile time of a repeated schema (cached).

Usage: QWEN_CLUSTER_CACHE=/tmp/cache .venv/bin/python bench/engine_bench.py [--old-ref HEAD]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [f"Request {i}: write a short note about topic number {i * 7 % 23}." for i in range(32)]
SCHEMA = {
    "type": "object",
    "properties": {
        **{f"field_{i}": {"type": "string", "pattern": "[a-z]{1,12}"} for i in range(7)},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "flag": {"type": "boolean"},
        "inner": {
            "type": "object",
            "properties": {
                "a": {"type": "string", "pattern": "[a-z]{1,8}"},
                "b": {"type": "integer", "minimum": 0, "maximum": 99},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
    "required": [*(f"field_{i}" for i in range(7)), "count", "flag", "inner"],
    "additionalProperties": False,
}


def demo_path() -> str:
    try:
        from deployments.engines.demo_models import ensure_demo_models
    except ImportError:  # before the layout change
        from cluster.demo_models import ensure_demo_models
    root = Path(os.environ.get("QWEN_CLUSTER_CACHE") or tempfile.mkdtemp(prefix="qwen-bench-"))
    ensure_demo_models(root)
    return str(root / "demo-models" / "qwen3.5-0.8b")


def load_old_engine(ref: str):
    """The static-batching engine at git `ref`, with its own sampler and detokenizer."""
    folder = Path(tempfile.mkdtemp(prefix="old-engine-"))
    names = {
        "transformers_engine": "old_engine",
        "sampling": "old_sampling",
        "detokenizer": "old_detokenizer",
    }
    for name, alias in names.items():
        source = subprocess.run(
            ["git", "show", f"{ref}:deployments/engines/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for other, other_alias in names.items():
            source = source.replace(f"deployments.engines.{other} ", f"{other_alias} ")
            source = source.replace(f"deployments.engines.{other}\n", f"{other_alias}\n")
            source = source.replace(f"from deployments.engines.{other} import", f"from {other_alias} import")
        (folder / f"{alias}.py").write_text(source)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("old_engine", folder / "old_engine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_engine"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.TransformersEngine


def make_engine(cls, path: str, threads: int, batch: int):
    from cluster.catalog import CATALOG
    from cluster.config import EngineConfig

    return cls(
        path,
        EngineConfig(
            device="cpu", dtype="float32", torch_threads=threads, max_batch_size=batch, max_model_len=2048
        ),
        thinking_default=False,
        sampling_defaults=CATALOG["0.8b"].sampling,
        random_weights=True,
    )


# Set by main for the new engine: a -100 bias on the end-of-turn ids so every row runs its full
# budget, like HF generate with eos_token_id=None (same tokens per row on both sides).
NO_EOS: dict[int, float] = {}


def request(text: str, max_tokens: int, structured=None, full_length: bool = False):
    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams

    return GenerationRequest(
        request_id=text,
        sampling=SamplingParams(
            max_tokens=max_tokens, structured=structured, logit_bias=dict(NO_EOS) if full_length else {}
        ),
        messages=[ChatMessage("user", [text])],
    )


async def run_batch(engine, requests) -> tuple[int, float]:
    """Run `requests` concurrently; returns (completion tokens, seconds)."""

    async def one(req):
        last = None
        async for delta in engine.chat(req):
            last = delta
        return last.completion_tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(r) for r in requests))
    return sum(counts), time.perf_counter() - started


def hf_generate(path: str, prompts: list[str], max_new: int) -> tuple[int, float]:
    import torch
    from transformers import AutoTokenizer, Qwen3_5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = Qwen3_5ForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
        for p in prompts
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=max_new)
    with torch.inference_mode():
        model.generate(**inputs, **{**kwargs, "max_new_tokens": 4})  # warm-up
        started = time.perf_counter()
        out = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
        seconds = time.perf_counter() - started
    return int(out[:, inputs["input_ids"].shape[1] :].numel()), seconds


async def engine_alone(
    cls, path, threads, batch, prompts, max_tokens, full_length=False
) -> tuple[int, float]:
    engine = make_engine(cls, path, threads, batch)
    await engine.start()
    try:
        await run_batch(engine, [request(p, 4) for p in prompts[:4]])  # warm-up
        return await run_batch(engine, [request(p, max_tokens, full_length=full_length) for p in prompts])
    finally:
        await engine.shutdown()


async def mixed(cls, path, threads, with_long: bool, rounds: int) -> list[float]:
    """Closed loop of 16 clients; client i % 8 == 0 asks 256 tokens (when `with_long`), others 8."""
    engine = make_engine(cls, path, threads, 16)
    await engine.start()
    ttfts: list[float] = []
    try:

        async def client(i: int):
            for r in range(rounds):
                long = i % 8 == 0
                if long and not with_long:
                    return
                req = request(f"client {i} round {r}: say something", 256 if long else 8)
                started = time.perf_counter()
                first = True
                async for _ in engine.chat(req):
                    if first and not long:
                        ttfts.append(time.perf_counter() - started)
                    first = False

        await asyncio.gather(*(client(i) for i in range(16)))
    finally:
        await engine.shutdown()
    return ttfts


async def structured(path, threads) -> dict:
    from deployments.engines.base import StructuredOutput
    from deployments.engines.transformers_engine import TransformersEngine

    engine = make_engine(TransformersEngine, path, threads, 16)
    await engine.start()
    spec = StructuredOutput("json_schema", json.dumps(SCHEMA))
    try:
        started = time.perf_counter()
        engine._grammars.compile(spec)
        first_compile = time.perf_counter() - started
        started = time.perf_counter()
        engine._grammars.compile(spec)
        second_compile = time.perf_counter() - started
        free = await run_batch(engine, [request(p, 96) for p in PROMPTS[:16]])
        constrained = await run_batch(engine, [request(p, 96, spec) for p in PROMPTS[:16]])
        valid = 0
        reqs = [request(p, 256, spec) for p in PROMPTS[:16]]

        async def text_of(req):
            return "".join([d.text async for d in engine.chat(req)])

        for text in await asyncio.gather(*(text_of(r) for r in reqs)):
            try:
                json.loads(text)
                valid += 1
            except ValueError:
                pass
    finally:
        await engine.shutdown()
    return {
        "free_tps": free[0] / free[1],
        "constrained_tps": constrained[0] / constrained[1],
        "first_compile_ms": first_compile * 1000,
        "second_compile_ms": second_compile * 1000,
        "valid": valid,
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--old-ref", default="HEAD", help="git ref of the static engine to compare with")
    parser.add_argument("--rounds", type=int, default=6, help="mixed workload rounds per client")
    parser.add_argument("--only", default="alone,mixed,decode,structured")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from deployments.engines.transformers_engine import TransformersEngine

    path = demo_path()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    NO_EOS.update({tokenizer.convert_tokens_to_ids(t): -100.0 for t in ("<|im_end|>", "<|endoftext|>")})
    old = load_old_engine(args.old_ref)
    parts = set(args.only.split(","))
    if "alone" in parts:
        hf = hf_generate(path, PROMPTS, 128)
        new = asyncio.run(engine_alone(TransformersEngine, path, args.threads, 32, PROMPTS, 128, True))
        prev = asyncio.run(engine_alone(old, path, args.threads, 32, PROMPTS, 128))
        print(
            f"  tokens: HF {hf[0]}, new {new[0]} (end-of-turn biased -100), old {prev[0]} (stops at end-of-turn)"
        )
        hf_tps, new_tps, old_tps = (t / s for t, s in (hf, new, prev))
        print(
            f"engine alone 32x128 (tokens/s): HF generate {hf_tps:.0f}, new {new_tps:.0f}, old {old_tps:.0f}"
        )
        print(
            f"  ratios: new/HF {new_tps / hf_tps:.2f}x, old/HF {old_tps / hf_tps:.2f}x, new/old {new_tps / old_tps:.2f}x"
        )
    if "mixed" in parts:
        for name, cls in (("new", TransformersEngine), ("old", old)):
            alone = asyncio.run(mixed(cls, path, args.threads, False, args.rounds))
            mix = asyncio.run(mixed(cls, path, args.threads, True, args.rounds))
            print(
                f"mixed c16 short TTFT ({name}): alone p50 {pct(alone, 0.5) * 1000:.0f} ms p99 "
                f"{pct(alone, 0.99) * 1000:.0f} ms; with long neighbours p50 {pct(mix, 0.5) * 1000:.0f} ms p99 "
                f"{pct(mix, 0.99) * 1000:.0f} ms; p99 ratio {pct(mix, 0.99) / pct(alone, 0.99):.2f}x"
            )
    if "decode" in parts:
        new = asyncio.run(engine_alone(TransformersEngine, path, args.threads, 32, PROMPTS, 128))
        prev = asyncio.run(engine_alone(old, path, args.threads, 32, PROMPTS, 128))
        print(
            f"decode c32x128 (output tokens/s): new {new[0] / new[1]:.0f}, old {prev[0] / prev[1]:.0f}, "
            f"ratio {(new[0] / new[1]) / (prev[0] / prev[1]):.2f}x"
        )
    if "structured" in parts:
        figures = asyncio.run(structured(path, args.threads))
        cost = 1 - figures["constrained_tps"] / figures["free_tps"]
        print(
            f"structured batch 16: free {figures['free_tps']:.0f} tok/s, schema {figures['constrained_tps']:.0f} "
            f"tok/s (cost {cost * 100:.1f}%); compile first {figures['first_compile_ms']:.2f} ms, "
            f"second {figures['second_compile_ms']:.3f} ms; {figures['valid']}/16 outputs parse"
        )


if __name__ == "__main__":
    main()
