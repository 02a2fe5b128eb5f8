"""The CPU paths of Qwen3.5's linear-attention layers against transformers' reference code."""

import pytest
import torch
from transformers import Qwen3_5TextConfig
from transformers.models.qwen3_5 import modeling_qwen3_5 as qwen

from deployments.engines import linear_attention

pytestmark = pytest.mark.unit

REFERENCE = qwen.torch_recurrent_gated_delta_rule
REFERENCE_CHUNK = qwen.torch_chunk_gated_delta_rule
REFERENCE_CONV = qwen.causal_conv1d_fn


@pytest.fixture(autouse=True)
def references_are_transformers():
    # An engine started in this process installs ours into transformers' module: the references
    # above must have been taken before that, or these tests would compare ours with ours.
    for function in (REFERENCE, REFERENCE_CHUNK, REFERENCE_CONV):
        assert function.__module__ == qwen.__name__, f"{function.__module__}: not transformers' reference"


@pytest.fixture
def reference_restored():
    yield
    qwen.torch_recurrent_gated_delta_rule = REFERENCE
    qwen.torch_chunk_gated_delta_rule = REFERENCE_CHUNK
    qwen.causal_conv1d_fn = REFERENCE_CONV


def inputs(batch, length, heads, k_dim, v_dim, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(dtype)

    query, key = randn(batch, length, heads, k_dim), randn(batch, length, heads, k_dim)
    value = randn(batch, length, heads, v_dim)
    g = -torch.rand(batch, length, heads, generator=generator)  # log decays are <= 0
    beta = torch.rand(batch, length, heads, generator=generator)
    state = torch.randn(batch, heads, k_dim, v_dim, generator=generator) * 0.1
    return query, key, value, g, beta, state


@pytest.mark.parametrize(
    ("batch", "length", "heads", "k_dim", "v_dim", "l2norm", "with_state"),
    [
        (32, 1, 2, 128, 128, True, True),  # the engine's decode step
        (3, 1, 4, 16, 32, True, False),
        (2, 5, 2, 8, 8, False, True),  # several tokens: the loop, not only one step
        (1, 7, 1, 32, 16, True, True),
    ],
)
def test_matches_the_reference(batch, length, heads, k_dim, v_dim, l2norm, with_state):
    query, key, value, g, beta, state = inputs(batch, length, heads, k_dim, v_dim)
    expected_out, expected_state = REFERENCE(
        query, key, value, g, beta,
        initial_state=state.clone() if with_state else None,
        output_final_state=True,
        use_qk_l2norm_in_kernel=l2norm,
    )  # fmt: skip
    out, new_state = linear_attention.recurrent_gated_delta_rule(
        query, key, value, g, beta,
        initial_state=state.clone() if with_state else None,
        output_final_state=True,
        use_qk_l2norm_in_kernel=l2norm,
    )  # fmt: skip
    assert out.shape == expected_out.shape and out.dtype == expected_out.dtype
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state, expected_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "length", "heads", "k_dim", "v_dim", "chunk_size", "l2norm", "with_state"),
    [
        (32, 64, 2, 128, 128, 64, True, True),  # the engine's chunk of a 32-row prefill: four of ours
        (5, 421, 2, 128, 128, 64, True, False),  # whole prompts: padded, 27 chunks of ours
        (4, 20, 2, 128, 128, 64, True, True),  # a short chat prompt: one chunk of its own length
        (2, 70, 3, 16, 8, 16, False, True),
        (1, 5, 1, 8, 8, 64, True, True),  # shorter than a chunk
    ],
)
def test_chunked_prefill_matches_the_reference(batch, length, heads, k_dim, v_dim, chunk_size, l2norm, with_state):
    query, key, value, g, beta, state = inputs(batch, length, heads, k_dim, v_dim)
    originals = [t.clone() for t in (query, key, value, g, beta)]
    expected_out, expected_state = REFERENCE_CHUNK(
        query, key, value, g, beta, chunk_size=chunk_size,
        initial_state=state.clone() if with_state else None,
        output_final_state=True,
        use_qk_l2norm_in_kernel=l2norm,
    )  # fmt: skip
    out, new_state = linear_attention.chunk_gated_delta_rule(
        query, key, value, g, beta, chunk_size=chunk_size,
        initial_state=state.clone() if with_state else None,
        output_final_state=True,
        use_qk_l2norm_in_kernel=l2norm,
    )  # fmt: skip
    assert out.shape == expected_out.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state, expected_state, rtol=1e-5, atol=1e-5)
    for before, after in zip(originals, (query, key, value, g, beta), strict=True):
        assert torch.equal(before, after)  # the caller's tensors are read, never written


def test_the_prefill_rule_runs_short_prompts_whole_and_long_ones_in_small_chunks():
    small = linear_attention.CPU_CHUNK_TOKENS
    assert linear_attention.chunk_length(1, 64) == 1
    assert linear_attention.chunk_length(2 * small, 64) == 2 * small  # one chunk, no padding
    assert linear_attention.chunk_length(2 * small + 1, 64) == small
    assert linear_attention.chunk_length(421, 64) == small
    assert linear_attention.chunk_length(421, 8) == 8  # never longer than the caller asks
    assert linear_attention.chunk_length(20, 8) == 8


def test_bfloat16_inputs_come_back_bfloat16_with_a_float32_state():
    query, key, value, g, beta, state = inputs(4, 1, 2, 32, 32, dtype=torch.bfloat16)
    expected_out, expected_state = REFERENCE(
        query, key, value, g, beta, initial_state=state.clone(), output_final_state=True, use_qk_l2norm_in_kernel=True
    )
    out, new_state = linear_attention.recurrent_gated_delta_rule(
        query, key, value, g, beta, initial_state=state.clone(), output_final_state=True, use_qk_l2norm_in_kernel=True
    )
    assert out.dtype == torch.bfloat16 and new_state.dtype == torch.float32
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(new_state, expected_state)


def test_a_float32_state_is_updated_in_place_and_returned_only_when_asked():
    query, key, value, g, beta, state = inputs(2, 1, 2, 16, 16)
    out, returned = linear_attention.recurrent_gated_delta_rule(
        query, key, value, g, beta, initial_state=state, output_final_state=True
    )
    # the layer copies the returned state into its cache tensor: the same tensor makes that free
    assert returned is state
    _, none = linear_attention.recurrent_gated_delta_rule(query, key, value, g, beta, initial_state=state)
    assert none is None


@pytest.mark.parametrize("rule", ["recurrent", "chunk"])
def test_a_state_that_is_not_contiguous_is_read_correctly(rule):
    query, key, value, g, beta, state = inputs(2, 3, 2, 16, 16)
    strided = state.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, other strides
    assert not strided.is_contiguous()
    ours = getattr(linear_attention, f"{rule}_gated_delta_rule")
    reference = REFERENCE if rule == "recurrent" else REFERENCE_CHUNK
    expected_out, expected_state = reference(query, key, value, g, beta, initial_state=state.clone(), output_final_state=True)
    out, new_state = ours(query, key, value, g, beta, initial_state=strided, output_final_state=True)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(new_state, expected_state, rtol=1e-5, atol=1e-5)


def test_install_replaces_the_reference_and_the_model_decodes_the_same(reference_restored):
    config = Qwen3_5TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        layer_types=["linear_attention", "full_attention"], num_attention_heads=2, num_key_value_heads=1,
        head_dim=16, linear_key_head_dim=32, linear_value_head_dim=32, linear_num_key_heads=2,
        linear_num_value_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = qwen.Qwen3_5ForCausalLM(config).eval()
    prompt = torch.randint(0, 64, (3, 9))

    def greedy_logits():
        with torch.inference_mode():
            return model.generate(
                prompt, max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True
            )

    expected = greedy_logits()
    replaced = ["torch_recurrent_gated_delta_rule", "torch_chunk_gated_delta_rule", "causal_conv1d_fn"]
    assert linear_attention.install() == replaced
    assert qwen.torch_recurrent_gated_delta_rule is linear_attention.recurrent_gated_delta_rule
    assert qwen.torch_chunk_gated_delta_rule is linear_attention.chunk_gated_delta_rule
    assert qwen.causal_conv1d_fn is linear_attention.causal_conv1d_fn
    assert linear_attention.install() == replaced  # idempotent
    lean = greedy_logits()
    assert torch.equal(lean.sequences, expected.sequences)
    torch.testing.assert_close(torch.stack(lean.logits), torch.stack(expected.logits), rtol=1e-4, atol=1e-4)


def test_install_leaves_an_unknown_module_layout_alone():
    class OtherLayout:
        pass

    assert linear_attention.install(OtherLayout) == []
    assert not hasattr(OtherLayout, "torch_recurrent_gated_delta_rule")
    assert not hasattr(OtherLayout, "torch_chunk_gated_delta_rule")
    assert not hasattr(OtherLayout, "causal_conv1d_fn")


def test_a_function_whose_kernel_package_is_installed_is_left_alone(monkeypatch):
    import importlib.util

    class Module:
        torch_recurrent_gated_delta_rule = staticmethod(REFERENCE)
        torch_chunk_gated_delta_rule = staticmethod(REFERENCE_CHUNK)
        causal_conv1d_fn = staticmethod(REFERENCE_CONV)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "fla" else real_find_spec(name))
    assert linear_attention.install(Module) == ["causal_conv1d_fn"]
    assert Module.torch_recurrent_gated_delta_rule is REFERENCE
    assert Module.torch_chunk_gated_delta_rule is REFERENCE_CHUNK


@pytest.mark.parametrize(
    ("batch", "length", "channels", "kernel", "with_bias", "activation", "dtype"),
    [
        (5, 421, 768, 4, False, "silu", torch.float32),  # a batch-job prefill of the demo checkpoint
        (1, 3, 16, 4, True, "silu", torch.float32),  # shorter than the kernel
        (2, 9, 8, 2, True, None, torch.float32),
        (3, 17, 24, 4, False, "silu", torch.bfloat16),
    ],
)
def test_conv_matches_the_reference(batch, length, channels, kernel, with_bias, activation, dtype):
    generator = torch.Generator().manual_seed(1)
    # as the layer passes it: a (batch, seq, channels) projection seen channels-first
    hidden = torch.randn(batch, length, channels, generator=generator).to(dtype).transpose(1, 2)
    weight = torch.randn(channels, kernel, generator=generator).to(dtype)
    bias = torch.randn(channels, generator=generator).to(dtype) if with_bias else None
    expected = REFERENCE_CONV(hidden, weight, bias, activation=activation)
    out = linear_attention.causal_conv1d_fn(hidden, weight, bias, activation=activation)
    assert out.shape == expected.shape == (batch, channels, length) and out.dtype == dtype
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}  # bfloat16: torch's defaults
    torch.testing.assert_close(out, expected, **tolerance)
    # a contiguous channels-first input gives the same result
    out_contiguous = linear_attention.causal_conv1d_fn(hidden.contiguous(), weight, bias, activation=activation)
    torch.testing.assert_close(out_contiguous, out)
