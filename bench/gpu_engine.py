"""Transformers engine on CUDA: tokens/s for 1 and 16 concurrent requests.

    python bench/gpu_engine.py [--max-tokens 64] [--skip-full]

Runs the demo 0.8b checkpoint, then a random-weight checkpoint with a full-size 0.8B-class Qwen3.5
layout (24 hybrid layers, hidden 1024, the real 248,320-token vocabulary, vision tower), both in
bfloat16 on the first GPU. Needs CUDA; no weights are downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from realsize_checkpoint import REAL_TEXT_DIMENSIONS

from cluster.catalog import CATALOG
from cluster.config import EngineConfig
from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
from deployments.engines.demo_models import build_image_processor, build_tokenizer, ensure_demo_models
from deployments.engines.transformers_engine import TransformersEngine

# The real Qwen3.5-0.8B text layout (bench/realsize_checkpoint.py), with its context and rope.
FULL_SIZE_TEXT = {
    **REAL_TEXT_DIMENSIONS,
    "max_position_embeddings": 262_144,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10_000_000.0,
        "partial_rotary_factor": 0.25,
        "mrope_section": [11, 11, 10],
        "mrope_interleaved": True,
    },
}
FULL_SIZE_VISION = {
    "depth": 12,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_heads": 12,
    "out_hidden_size": 1024,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
}


def write_full_size_checkpoint(path: Path) -> int:
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    tokenizer = build_tokenizer()
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in (
            "<|image_pad|>",
            "<|video_pad|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|im_end|>",
            "<|endoftext|>",
        )
    }
    text = dict(FULL_SIZE_TEXT, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen3_5Config(
        text_config=text,
        vision_config=FULL_SIZE_VISION,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3_5ForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    build_image_processor().save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


async def measure(engine: TransformersEngine, concurrency: int, max_tokens: int, rounds: int = 3) -> float:
    def request(i: int) -> GenerationRequest:
        return GenerationRequest(
            request_id=str(i),
            sampling=SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=i),
            messages=[ChatMessage("user", [f"Write a long story number {i}."])],
            enable_thinking=False,
        )

    async def one(i: int) -> int:
        last = None
        async for delta in engine.chat(request(i)):
            last = delta
        return last.completion_tokens

    await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm-up
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(i) for i in range(concurrency))))
        best = max(best, tokens / (time.perf_counter() - started))
    return best


async def bench(path: str, label: str, max_tokens: int) -> None:
    engine = TransformersEngine(
        path,
        EngineConfig(device="cuda", dtype="bfloat16", max_model_len=8192, max_batch_size=16, batch_wait_ms=5),
        thinking_default=False,
        sampling_defaults=CATALOG["0.8b"].sampling,
        random_weights=True,
    )
    await engine.start()
    try:
        for concurrency in (1, 16):
            rate = await measure(engine, concurrency, max_tokens)
            print(f"{label:<28} concurrency {concurrency:>2}: {rate:8.1f} tokens/s", flush=True)
    finally:
        await engine.shutdown()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: this benchmark needs a GPU")
    print(f"device: {torch.cuda.get_device_name(0)}  torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        demo = ensure_demo_models(Path(tmp), ["0.8b"])["0.8b"]
        asyncio.run(bench(str(demo), "demo 0.8b (random, tiny)", args.max_tokens))
        if not args.skip_full:
            full = Path(tmp) / "full-0.8b"
            count = write_full_size_checkpoint(full)
            asyncio.run(bench(str(full), f"full-size 0.8B ({count / 1e9:.2f}B)", args.max_tokens))


if __name__ == "__main__":
    main()
