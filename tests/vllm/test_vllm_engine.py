"""VLLMEngine itself on vLLM's CPU build: start-up refusals that name the missing piece, cancellation
when the consumer goes away, the batch inference stage on one size (the integration tier's stage
test, run here with the engine switched to vLLM), and a worker the OS places, not pinned by vLLM."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

pytest.importorskip("vllm", reason="vLLM is an optional engine: `make test-vllm` builds its venv")

from tests.integration.test_batch_inference_stage import (  # noqa: E402, F401 - run here on vLLM
    test_rows_get_outputs_errors_and_pass_through,
)

pytestmark = pytest.mark.vllm


def vllm_model(max_model_len: int = 1024):
    """The demo 0.8b model config on the vLLM engine, as the tier's API serves it."""
    from cluster.config import load_config

    model = load_config(profile="demo").model_by_name("0.8b")
    model.engine.kind = "vllm"
    model.engine.dtype = "bfloat16"
    model.engine.max_model_len = max_model_len
    model.engine.engine_kwargs = {"enforce_eager": True}
    return model


@pytest.fixture(scope="module")
def stage(demo_cache, vllm_env):
    """The batch inference stage on one size, engine vLLM (the name the imported test asks for). Its
    constructor builds vLLM's engine here, outside any event loop (`VLLMEngine.load`), as a batch
    actor's does; the test then runs it on a loop of its own."""
    from cluster.batch_config import TaskSettings
    from pipelines.inference import InferenceStage

    settings = TaskSettings(
        classify_labels=["invoice", "letter"],
        max_tokens={"describe": 4, "classify": 8, "extract": 6, "summarize": 4},
    )
    return InferenceStage(vllm_model(), str(demo_cache), settings, None, temperature=0.0, seed=1), settings


def test_start_refusals_name_the_missing_piece(demo_cache, tmp_path):
    from deployments.engines.vllm_engine import EngineStartError, VLLMEngine

    source = demo_cache / "demo-models" / "qwen3.5-0.8b"
    narrow = tmp_path / "narrow"
    shutil.copytree(source, narrow)
    config = json.loads((narrow / "config.json").read_text())
    config["text_config"]["linear_key_head_dim"] = 16
    (narrow / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineStartError, match="linear_key_head_dim a multiple of 32") as head_dim:
        asyncio.run(VLLMEngine(str(narrow), vllm_model()).start())
    assert "\n" not in str(head_dim.value)
    float32 = vllm_model()
    float32.engine.dtype = "float32"
    with pytest.raises(EngineStartError, match="bfloat16"):
        asyncio.run(VLLMEngine(str(source), float32).start())


def test_closing_the_stream_aborts_the_request(demo_cache, vllm_env):
    from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams, StructuredOutput
    from deployments.engines.vllm_engine import VLLMEngine

    async def main():
        engine = VLLMEngine(str(demo_cache / "demo-models" / "qwen3.5-0.8b"), vllm_model())
        await engine.start()
        try:
            # A regex of 600 letters: the answer cannot end early, whatever the random weights say.
            request = GenerationRequest(
                "cancel-me",
                SamplingParams(max_tokens=600, structured=StructuredOutput("regex", "[ab]{600}")),
                messages=[ChatMessage("user", ["go on"])],
            )
            stream = engine.chat(request)
            first = await stream.__anext__()
            assert first.finish_reason is None
            await stream.aclose()  # what the API does when the client disconnects
            for _ in range(50):
                if engine._engine.get_num_unfinished_requests() == 0:
                    break
                await asyncio.sleep(0.1)
            assert engine._engine.get_num_unfinished_requests() == 0
            assert engine.info().device == "cpu"
        finally:
            await engine.shutdown()

    asyncio.run(main())


def _worker_affinities() -> list[list[int]]:
    """The cores each thread of each live vLLM worker process under this one may run on."""
    import os

    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:  # engines of earlier tests may have left exited processes behind
            if not child.name().startswith("VLLM::Worker") or child.status() == psutil.STATUS_ZOMBIE:
                continue
            found.extend(sorted(os.sched_getaffinity(thread.id)) for thread in child.threads())
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def test_the_worker_is_not_pinned_to_cores(demo_cache, vllm_env):
    """vLLM's CPU build would pin its worker to cores of its choosing (every engine on a node to the
    same ones); this engine leaves placement to the OS (`leave_cpu_placement_to_ray`)."""
    import os

    from deployments.engines.vllm_engine import VLLMEngine

    async def main():
        engine = VLLMEngine(str(demo_cache / "demo-models" / "qwen3.5-0.8b"), vllm_model(max_model_len=256))
        await engine.start()
        try:
            affinities = _worker_affinities()
            assert affinities, "the engine started no vLLM worker process"
            assert all(cores == sorted(os.sched_getaffinity(0)) for cores in affinities)
        finally:
            await engine.shutdown()

    asyncio.run(main())
