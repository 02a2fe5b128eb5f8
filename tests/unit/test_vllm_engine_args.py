import pytest

from cluster.config import load_config, parse_config
from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams
from deployments.engines.vllm_engine import vllm_engine_kwargs, vllm_sampling_kwargs

pytestmark = pytest.mark.unit


def test_gpu_profile_translates_to_model_card_flags():
    model = load_config(profile="gpu").model_by_name("qwen3.5-9b")
    kwargs = vllm_engine_kwargs("Qwen/Qwen3.5-9B", model)
    assert kwargs["model"] == "Qwen/Qwen3.5-9B"
    assert kwargs["served_model_name"] == ["qwen3.5-9b"]
    assert kwargs["reasoning_parser"] == "qwen3"
    assert kwargs["max_model_len"] == model.engine.max_model_len
    assert kwargs["limit_mm_per_prompt"] == {"image": 4, "video": 0}
    assert kwargs["gpu_memory_utilization"] == 0.9
    assert kwargs["dtype"] == "bfloat16"


def test_user_engine_kwargs_override_and_text_only_mode():
    config = parse_config(
        {
            "models": [
                {
                    "size": "2b",
                    "engine": {
                        "kind": "vllm",
                        "max_images_per_prompt": 0,
                        "engine_kwargs": {"max_model_len": 8192, "enforce_eager": True},
                    },
                }
            ]
        }
    )
    kwargs = vllm_engine_kwargs("/models/2b", config.models[0])
    assert kwargs["max_model_len"] == 8192 and kwargs["enforce_eager"] is True
    assert kwargs["language_model_only"] is True
    assert "limit_mm_per_prompt" not in kwargs


def test_sampling_defaults_follow_the_mode():
    model = load_config(profile="gpu").model_by_name("qwen3.5-4b")
    request = GenerationRequest(
        "r",
        SamplingParams(max_tokens=7, top_k=5, stop=["END"], seed=3),
        messages=[ChatMessage("user", ["hi"])],
    )
    thinking = vllm_sampling_kwargs(request, model.spec.sampling(True))
    assert thinking["temperature"] == 1.0 and thinking["top_p"] == 0.95
    assert thinking["top_k"] == 5 and thinking["stop"] == ["END"] and thinking["seed"] == 3
    plain = vllm_sampling_kwargs(request, model.spec.sampling(False))
    assert plain["temperature"] == 0.7 and plain["max_tokens"] == 7


def test_over_long_prompts_from_vllm_are_a_400_with_the_transformers_code():
    from deployments.engines.base import EngineRequestError, PromptTooLongError
    from deployments.engines.vllm_engine import _request_error

    refusal = _request_error(ValueError("This model's maximum context length is 4096 tokens. However, ..."))
    assert isinstance(refusal, PromptTooLongError)
    assert (refusal.status_code, refusal.code, refusal.param) == (400, "context_length_exceeded", "messages")
    assert _request_error(RuntimeError("engine dead")) is None
    assert not isinstance(_request_error(ValueError("bad")), EngineRequestError)


def test_vllm_engine_without_vllm_names_the_package(monkeypatch):
    import asyncio
    import sys

    from deployments.engines.vllm_engine import EngineStartError, VLLMEngine

    monkeypatch.setitem(sys.modules, "vllm", None)  # what an environment without vLLM sees
    model = load_config(profile="gpu").model_by_name("qwen3.5-0.8b")
    with pytest.raises(EngineStartError, match="needs the vllm package") as raised:
        asyncio.run(VLLMEngine("Qwen/Qwen3.5-0.8B", model).start())
    assert "\n" not in str(raised.value)


def test_cpu_worker_threads_are_left_unpinned_unless_the_operator_chose():
    from deployments.engines.vllm_engine import leave_cpu_placement_to_ray

    environ: dict[str, str] = {}
    assert leave_cpu_placement_to_ray(environ)
    assert environ == {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    chosen = {"VLLM_CPU_OMP_THREADS_BIND": "0-3|4-7"}
    assert not leave_cpu_placement_to_ray(chosen)
    assert chosen == {"VLLM_CPU_OMP_THREADS_BIND": "0-3|4-7"}
