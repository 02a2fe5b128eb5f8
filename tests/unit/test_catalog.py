import pytest

from cluster.catalog import CATALOG, CONTEXT_LENGTH, SIZES, relative_cost, spec_for

pytestmark = pytest.mark.unit


def test_four_sizes_in_cost_order():
    assert SIZES == ("0.8b", "2b", "4b", "9b")
    params = [CATALOG[s].parameters for s in SIZES]
    assert params == sorted(params)


def test_names_ids_and_context():
    spec = CATALOG["9b"]
    assert spec.public_name == "qwen3.5-9b"
    assert spec.hf_id("instruct") == "Qwen/Qwen3.5-9B"
    assert spec.hf_id("base") == "Qwen/Qwen3.5-9B-Base"
    assert CATALOG["0.8b"].hf_id("instruct") == "Qwen/Qwen3.5-0.8B"
    assert all(s.context_length == CONTEXT_LENGTH == 262_144 for s in CATALOG.values())


def test_thinking_defaults_small_off_large_on():
    assert [CATALOG[s].thinking_default for s in SIZES] == [False, False, True, True]


def test_recommended_sampling_per_mode():
    spec = CATALOG["4b"]
    assert spec.sampling(True).temperature == 1.0 and spec.sampling(True).top_p == 0.95
    assert spec.sampling(False).temperature == 0.7 and spec.sampling(False).top_p == 0.8
    assert spec.sampling(False).top_k == 20


def test_memory_grows_with_size():
    memory = [CATALOG[s].accelerator_memory_gib for s in SIZES]
    assert memory == sorted(memory) and memory[0] > 0


def test_lookup_by_tag_or_name():
    assert spec_for("qwen3.5-2b").size == "2b"
    assert spec_for("4B").size == "4b"
    with pytest.raises(KeyError, match="valid: qwen3.5-0.8b"):
        spec_for("qwen3.5-14b")


def test_relative_cost_by_parameters():
    assert relative_cost("9b") == 1.0
    assert relative_cost("0.8b") == pytest.approx(0.8 / 9)
