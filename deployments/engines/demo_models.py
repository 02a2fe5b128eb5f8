"""Random-weight demo checkpoints of the real Qwen3.5 architecture, generated offline.

Each checkpoint is a real `Qwen3_5ForConditionalGeneration` (hybrid Gated DeltaNet + full attention
text model with the vision tower), a byte-level BPE tokenizer with Qwen's special tokens and a
Qwen3.5-style chat template, and the PIL image processor. Only the widths and depths are shrunk, so
the whole serving path (chat template, image tokens, mRoPE, hybrid cache) runs as it does for the
real models, but in milliseconds. Sizes keep the family's relative cost 0.8 : 2 : 4 : 9 by
parameter count. Fixed seeds make the bytes deterministic. The answers are noise.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.catalog import CATALOG, ModelSize

log = logging.getLogger(__name__)

MARKER_FILE = "qwen_cluster_demo.json"
# Bump when the generated files change shape, so stale caches are regenerated.
GENERATOR_VERSION = 5

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Added but not special, as in Qwen's tokenizer: decoding with skip_special_tokens keeps them, so the
# reasoning parser can split thinking from the answer.
THINK_TOKENS = ["<think>", "</think>"]

# Qwen3.5's chat format: ChatML turns, images as vision_start + image_pad + vision_end, and a
# thinking block that the generation prompt opens (thinking on) or closes empty (thinking off).
# Qwen3.5's chat-template structure, shortened: tool definitions in the system turn, assistant tool
# calls in the qwen3_coder XML form, consecutive tool results grouped in one user turn as
# <tool_response> blocks, thinking stripped from earlier assistant turns, images as vision pads.
CHAT_TEMPLATE = (
    "{%- macro render_text(message) -%}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- elif message.content -%}{%- for part in message.content -%}"
    "{%- if part.type in ('image', 'image_url') -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set system_text = '' -%}"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set system_text = render_text(messages[0]) -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}{%- set rest = messages -%}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if system_text -%}{{- system_text + '\\n\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n\\nYou have access to the following functions:\\n\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' -}}{{- (tool.function if tool.function is defined else tool) | tojson -}}"
    "{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nIf you choose to call a function ONLY reply in the following format with NO suffix:"
    "\\n\\n<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1"
    "\\n</parameter>\\n</function>\\n</tool_call><|im_end|>\\n' -}}"
    "{%- elif system_text -%}{{- '<|im_start|>system\\n' + system_text + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for message in rest -%}"
    "{%- if message.role == 'tool' -%}"
    "{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + render_text(message) + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- set text = render_text(message) -%}"
    "{%- if message.role == 'assistant' and '</think>' in text -%}"
    "{%- set text = text.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}"
    "{{- text -}}"
    "{%- if message.role == 'assistant' and message.tool_calls -%}"
    "{%- for call in message.tool_calls -%}"
    "{%- set function = call.function if call.function is defined else call -%}"
    "{%- if text or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n<function=' + function.name + '>\\n' -}}"
    "{%- if function.arguments is mapping -%}{%- for name, value in function.arguments | items -%}"
    "{{- '<parameter=' + name + '>\\n' -}}"
    "{%- if value is string -%}{{- value -}}{%- else -%}{{- value | tojson -}}{%- endif -%}"
    "{{- '\\n</parameter>\\n' -}}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '</function>\\n</tool_call>' -}}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- else -%}{{- '<think>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)

_TOKENIZER_CORPUS = """
The quick brown fox jumps over the lazy dog. A model answers questions about documents, images and
code. Please summarize the following text in three sentences. Extract the invoice number, the date
and the total amount. Describe the image in detail. Transcribe the page to Markdown. Prove that the
sum of two even numbers is even. Solve for x: 3x + 7 = 22. def fibonacci(n): return n if n < 2 else
fibonacci(n - 1) + fibonacci(n - 2). SELECT name, total FROM orders WHERE total > 100 ORDER BY total;
Hello! How are you today? Thank you very much. The weather is nice. Bonjour, comment allez-vous?
Hola, como estas? Guten Tag. 你好，世界。こんにちは。 Привет, мир. 0 1 2 3 4 5 6 7 8 9 10 100 1000 2026
Step 1: read the question. Step 2: think about it. Step 3: answer. Therefore the answer is 42.
{"name": "value", "items": [1, 2, 3], "ok": true, "total": 12.5}
"""


@dataclass(frozen=True)
class DemoArchitecture:
    """Widths and depths of one demo checkpoint."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    vision_hidden_size: int
    vision_depth: int


# Tuned so parameter counts keep 0.8 : 2 : 4 : 9 (the test checks the ratio within 15%).
DEMO_ARCHITECTURES: dict[ModelSize, DemoArchitecture] = {
    "0.8b": DemoArchitecture(
        hidden_size=32, num_layers=2, intermediate_size=256, vision_hidden_size=32, vision_depth=1
    ),
    "2b": DemoArchitecture(
        hidden_size=56, num_layers=4, intermediate_size=168, vision_hidden_size=48, vision_depth=1
    ),
    "4b": DemoArchitecture(
        hidden_size=80, num_layers=6, intermediate_size=240, vision_hidden_size=64, vision_depth=1
    ),
    "9b": DemoArchitecture(
        hidden_size=104, num_layers=8, intermediate_size=416, vision_hidden_size=80, vision_depth=2
    ),
}

# Upper bound for BPE training; the small corpus yields about 620 tokens, which keeps the embedding
# matrices from dominating the smallest checkpoint.
VOCAB_SIZE = 1024
SEED = 20260101


def build_tokenizer():
    """Train a small byte-level BPE with Qwen's pre-tokenizer and special tokens (deterministic)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX, Qwen3_5Tokenizer

    raw = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    raw.normalizer = normalizers.NFC()
    from tokenizers import Regex

    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS) - len(THINK_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    raw.train_from_iterator([_TOKENIZER_CORPUS] * 4, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen3_5Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens(THINK_TOKENS, special_tokens=False)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_config(size: ModelSize, tokenizer):
    """A `Qwen3_5Config` with the real layout (3 Gated DeltaNet layers per full-attention layer)."""
    from transformers import Qwen3_5Config

    arch = DEMO_ARCHITECTURES[size]
    layer_types = [
        "full_attention" if (i + 1) % 4 == 0 or i == arch.num_layers - 1 else "linear_attention"
        for i in range(arch.num_layers)
    ]
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "layer_types": layer_types,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 2,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "max_position_embeddings": CATALOG[size].context_length,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10_000_000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_config = {
        "depth": arch.vision_depth,
        "hidden_size": arch.vision_hidden_size,
        "intermediate_size": arch.vision_hidden_size * 2,
        "num_heads": 2,
        "out_hidden_size": arch.hidden_size,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 256,
    }
    return Qwen3_5Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_image_processor():
    """Qwen's image processor in its PIL form (no torchvision needed)."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        min_pixels=32 * 32,
        max_pixels=448 * 448,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def demo_marker(size: ModelSize) -> dict:
    """What a demo checkpoint's marker file holds: generator version, size, architecture, seed."""
    return {
        "random_weights": True,
        "generator_version": GENERATOR_VERSION,
        "size": size,
        "architecture": asdict(DEMO_ARCHITECTURES[size]),
        "seed": SEED,
        "note": "Random-weight demo checkpoint of the Qwen3.5 architecture: outputs are noise.",
    }


def is_current(path: Path, size: ModelSize) -> bool:
    """Whether `path` holds a demo checkpoint made by this generator version."""
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == demo_marker(size)
    except (OSError, json.JSONDecodeError):
        return False


def write_demo_checkpoint(size: ModelSize, path: Path) -> int:
    """Generate one demo checkpoint at `path` and return its parameter count."""
    import torch
    from transformers import Qwen3_5ForConditionalGeneration

    tokenizer = build_tokenizer()
    config = build_config(size, tokenizer)
    torch.manual_seed(SEED + list(CATALOG).index(size))
    model = Qwen3_5ForConditionalGeneration(config).eval()
    import os

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    build_image_processor().save_pretrained(tmp)
    (tmp / MARKER_FILE).write_text(json.dumps(demo_marker(size), indent=2, sort_keys=True))
    # Swap in by rename so a concurrent reader never sees half a checkpoint; when another process
    # (a replica on the same node) finished first, keep its copy.
    if is_current(path, size):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
        try:
            tmp.rename(path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not is_current(path, size):
                raise
    return sum(p.numel() for p in model.parameters())


def ensure_demo_models(
    cache_dir: Path, sizes: list[ModelSize] | None = None, force: bool = False
) -> dict[str, Path]:
    """Make sure a current demo checkpoint exists for each size; return their paths by size.

    Generation is offline and takes about a second per size.
    """
    paths: dict[str, Path] = {}
    for size in sizes or list(CATALOG):
        path = cache_dir / "demo-models" / CATALOG[size].public_name
        if force or not is_current(path, size):
            count = write_demo_checkpoint(size, path)
            log.warning(
                "wrote RANDOM-WEIGHT demo checkpoint %s (%d parameters) to %s: answers are noise",
                CATALOG[size].public_name,
                count,
                path,
            )
        paths[size] = path
    return paths
