"""Translation of the new sampling fields and structured outputs to vLLM's parameters."""

import json

import pytest

from cluster.config import load_config
from deployments.engines.base import ChatMessage, GenerationRequest, SamplingParams, StructuredOutput
from deployments.engines.structured import json_ebnf
from deployments.engines.vllm_engine import vllm_sampling_kwargs, vllm_structured_kwargs

pytestmark = pytest.mark.unit


def test_logprobs_penalties_and_bias_translate():
    model = load_config(profile="gpu").model_by_name("qwen3.5-4b")
    request = GenerationRequest(
        "r",
        SamplingParams(logprobs=True, top_logprobs=5, frequency_penalty=0.5, logit_bias={7: -100.0}),
        messages=[ChatMessage("user", ["hi"])],
    )
    kwargs = vllm_sampling_kwargs(request, model.spec.sampling(False))
    assert kwargs["logprobs"] == 5
    assert kwargs["frequency_penalty"] == 0.5
    assert kwargs["logit_bias"] == {7: -100.0}
    plain = vllm_sampling_kwargs(
        GenerationRequest("r", SamplingParams(), messages=[ChatMessage("user", ["hi"])]),
        model.spec.sampling(False),
    )
    assert plain["logprobs"] == 0 and plain["frequency_penalty"] == 0.0 and plain["logit_bias"] is None


def test_a_caller_that_reads_no_token_probabilities_gets_none_computed():
    model = load_config(profile="gpu").model_by_name("qwen3.5-4b")
    chat = [ChatMessage("user", ["hi"])]
    skipped = GenerationRequest("r", SamplingParams(), messages=chat, answer_logprobs=False)
    assert vllm_sampling_kwargs(skipped, model.spec.sampling(False))["logprobs"] is None
    # An explicit `logprobs` request still wins: the client asked for them.
    asked = GenerationRequest(
        "r", SamplingParams(logprobs=True, top_logprobs=2), messages=chat, answer_logprobs=False
    )
    assert vllm_sampling_kwargs(asked, model.spec.sampling(False))["logprobs"] == 2


def test_structured_outputs_translate_to_vllm_names():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert vllm_structured_kwargs(None) is None
    # JSON goes as the transformers engine's own grammar (compact, strings of valid JSON characters).
    as_schema = vllm_structured_kwargs(StructuredOutput("json_schema", json.dumps(schema)))
    assert as_schema == {"grammar": json_ebnf(StructuredOutput("json_schema", json.dumps(schema)))}
    assert "root ::=" in as_schema["grammar"]
    as_object = vllm_structured_kwargs(StructuredOutput("json_object"))
    assert as_object == {"grammar": json_ebnf(StructuredOutput("json_object"))}
    assert vllm_structured_kwargs(StructuredOutput("regex", r"\d+")) == {"regex": r"\d+"}
    assert vllm_structured_kwargs(StructuredOutput("choice", '["a", "b"]')) == {"choice": ["a", "b"]}
    assert vllm_structured_kwargs(StructuredOutput("grammar", 'root ::= "x"')) == {"grammar": 'root ::= "x"'}


def test_vllm_prompt_renders_tools_and_follows_the_thinking_rule(demo_cache):
    """The vLLM engine renders through the same template call as the transformers engine: the tools a
    request offers reach the prompt, and a constrained answer is generated without thinking."""
    from transformers import AutoTokenizer

    from deployments.engines.vllm_engine import VLLMEngine

    model = load_config(profile="gpu").model_by_name("qwen3.5-4b")  # thinks by default
    engine = VLLMEngine(str(demo_cache / "demo-models" / "qwen3.5-4b"), model)
    engine._tokenizer = AutoTokenizer.from_pretrained(demo_cache / "demo-models" / "qwen3.5-4b")
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    messages = [ChatMessage("user", ["weather in Oslo?"])]
    prompt, thinking = engine.prompt(
        GenerationRequest("r", SamplingParams(), messages=messages, tools=[tool])
    )
    assert "get_weather" in prompt["prompt"] and thinking is True
    assert "<think>\n\n</think>" not in prompt["prompt"]
    constrained = SamplingParams(structured=StructuredOutput("json_object"))
    prompt, thinking = engine.prompt(GenerationRequest("r", constrained, messages=messages))
    assert thinking is False and "get_weather" not in prompt["prompt"]
    assert prompt["prompt"].rstrip().endswith("</think>")
    raw, thinking = engine.prompt(GenerationRequest("r", SamplingParams(), prompt="Once upon"))
    assert raw == {"prompt": "Once upon"} and thinking is False
