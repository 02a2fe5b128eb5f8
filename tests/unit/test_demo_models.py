import hashlib
import json

import pytest

from cluster.catalog import CATALOG, SIZES
from deployments.engines.demo_models import MARKER_FILE, build_tokenizer, ensure_demo_models, is_current

pytestmark = pytest.mark.unit


def _param_count(path):
    from safetensors import safe_open

    total = 0
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open handles are not dicts
            total += _prod(f.get_slice(key).get_shape())
    return total


def _prod(shape):
    out = 1
    for n in shape:
        out *= n
    return out


def test_sizes_keep_relative_cost(demo_cache):
    counts = {s: _param_count(demo_cache / "demo-models" / CATALOG[s].public_name) for s in SIZES}
    base = counts["0.8b"] / 0.8
    for size in SIZES:
        expected = CATALOG[size].parameters / 1e9
        assert counts[size] / base == pytest.approx(expected, rel=0.15), counts


def test_checkpoints_are_real_qwen35_and_marked_random(demo_cache):
    path = demo_cache / "demo-models" / "qwen3.5-2b"
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen3_5"
    assert config["architectures"] == ["Qwen3_5ForConditionalGeneration"]
    layer_types = config["text_config"]["layer_types"]
    assert "linear_attention" in layer_types and "full_attention" in layer_types
    assert config["vision_config"]["depth"] >= 1
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["random_weights"] is True
    assert (path / "preprocessor_config.json").is_file()
    assert is_current(path, "2b")


def test_generation_is_deterministic(tmp_path):
    first = ensure_demo_models(tmp_path / "a", ["0.8b"])["0.8b"]
    second = ensure_demo_models(tmp_path / "b", ["0.8b"])["0.8b"]
    digest = lambda p: hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(first) == digest(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_stale_checkpoint_is_regenerated(tmp_path):
    path = ensure_demo_models(tmp_path, ["0.8b"])["0.8b"]
    (path / MARKER_FILE).write_text("{}")
    assert not is_current(path, "0.8b")
    ensure_demo_models(tmp_path, ["0.8b"])
    assert is_current(path, "0.8b")


def test_chat_template_thinking_modes():
    tokenizer = build_tokenizer()
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]}]
    on = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    off = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert on.startswith("<|im_start|>user\nhi<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n")
    assert on.endswith("<|im_start|>assistant\n<think>\n")
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_tokenizer_round_trips_any_text():
    tokenizer = build_tokenizer()
    text = "Grüße, 世界! def f(x): return x**2  🙂"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") != tokenizer.unk_token_id


def test_chat_template_renders_tools_and_tool_turns_as_qwen35_does():
    # Tool definitions in the system turn, calls in the qwen3_coder XML form, consecutive tool
    # results grouped in one user turn: what the tool-call parser and the grammar expect back.
    tokenizer = build_tokenizer()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "tool", "content": "22C", "tool_call_id": "call_1"},
    ]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n# Tools")
    assert '<tools>\n{"name": "get_weather"' in text
    assert "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n" in text
    assert "<parameter=days>\n2\n</parameter>\n</function>\n</tool_call><|im_end|>" in text
    assert text.count("<|im_start|>user") == 2
    assert "<tool_response>\nsunny\n</tool_response>\n<tool_response>\n22C\n</tool_response><|im_end|>" in text
    without_tools = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert "# Tools" not in without_tools and without_tools.startswith("<|im_start|>user\n")
