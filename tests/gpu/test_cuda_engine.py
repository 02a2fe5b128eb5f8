"""The transformers engine on CUDA with the demo checkpoints (skipped without a GPU)."""

import asyncio

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cuda_generation_batches_and_counts_tokens(demo_cache):
    from cluster.catalog import CATALOG
    from cluster.config import EngineConfig
    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
    from deployments.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(
        str(demo_cache / "demo-models" / "qwen3.5-0.8b"),
        EngineConfig(device="cuda", dtype="bfloat16", max_model_len=1024),
        thinking_default=False,
        sampling_defaults=CATALOG["0.8b"].sampling,
        random_weights=True,
    )

    async def run():
        await engine.start()
        try:

            async def one(i):
                request = GenerationRequest(
                    str(i),
                    SamplingParams(max_tokens=8, seed=i),
                    messages=[ChatMessage("user", [f"hello {i}"])],
                )
                return [d async for d in engine.chat(request)][-1]

            return await asyncio.gather(*(one(i) for i in range(8)))
        finally:
            await engine.shutdown()

    finals = asyncio.run(run())
    assert engine.info().device == "cuda"
    assert all(f.finish_reason in ("stop", "length") and 1 <= f.completion_tokens <= 8 for f in finals)
