"""PromptBuilder.encode: the Rust backend's single-text call gives the ids the transformers wrapper gives."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.unit

TEXTS = [
    "",
    "Give me a short greeting.",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Describe it.",
    "日本語のテキストと中文，还有 emoji 🚀🔥 and   odd\tspacing\n\n\n",
    "def f(x):\n    return x ** 2  # 注释\n",
    "<|im_start|> not quite <|im_end  and <|endoftext|> inside prose",
]


@pytest.fixture(scope="module")
def tokenizer(demo_cache):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_cache / "demo-models" / "qwen3.5-0.8b")


def builder_for(tokenizer):
    from deployments.engines.prompting import PromptBuilder

    return PromptBuilder(tokenizer, SimpleNamespace(merge_size=2), max_images=1, max_decoded_pixels=10)


@pytest.mark.parametrize("text", TEXTS)
def test_backend_ids_match_the_wrapper(tokenizer, text):
    builder = builder_for(tokenizer)
    assert builder._backend is not None
    assert builder.encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_tokenizer_that_splits_special_tokens_goes_through_the_wrapper(tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "split_special_tokens", True)
    builder = builder_for(tokenizer)
    assert builder._backend is None
    text = TEXTS[2]
    assert builder.encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_long_text_takes_the_wrapper_that_lets_other_threads_run(tokenizer):
    from deployments.engines.prompting import GIL_HOLDING_ENCODE_MAX_CHARS

    builder = builder_for(tokenizer)
    calls = []
    backend = builder._backend

    class Recording:
        def encode(self, text, add_special_tokens):
            calls.append(len(text))
            return backend.encode(text, add_special_tokens=add_special_tokens)

    builder._backend = Recording()
    short, long = "a b c " * 10, "a b c " * (GIL_HOLDING_ENCODE_MAX_CHARS // 6 + 1)
    assert builder.encode(short) == tokenizer(short, add_special_tokens=False)["input_ids"]
    assert builder.encode(long) == tokenizer(long, add_special_tokens=False)["input_ids"]
    assert calls == [len(short)]
