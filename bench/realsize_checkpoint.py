"""A random-weight checkpoint with the real Qwen3.5-0.8B text dimensions, for benches where model
compute, not serving overhead, should dominate.

    python bench/realsize_checkpoint.py [--out DIR]     # prints the checkpoint's path

Text model as Qwen3.5-0.8B's published config: hidden size 1024, 24 layers ([3 Gated DeltaNet, 1
gated attention] x 6), FFN 3584, attention 8 query / 2 KV heads of 256, Gated DeltaNet 16 + 16 heads
of 128, vocabulary 248,320 rows (tied embeddings), M-RoPE sections [11, 11, 10]; about 0.75 billion
parameters in bfloat16 (1.5 GB on disk). The tokenizer, chat template and image processor are the
demo's (the demo tokenizer uses the first thousand rows; the logits still cover all 248,320), and
the vision tower stays demo-small: the benches that use this send text. Generated offline, once, in
about a minute; a marker file makes later calls reuse it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "realsize-marker.json"
# Qwen3.5-0.8B's text_config (model card / config.json of Qwen/Qwen3.5-0.8B).
REAL_TEXT_DIMENSIONS = {
    "vocab_size": 248_320,
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_hidden_layers": 24,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "tie_word_embeddings": True,
}
MARKER_CONTENT = {"version": 1, "text": REAL_TEXT_DIMENSIONS, "dtype": "bfloat16"}


def default_path() -> Path:
    sys.path.insert(0, str(REPO))
    from cluster.config import default_cache_dir

    return default_cache_dir() / "bench-models" / "qwen3.5-0.8b-realsize"


def ensure_realsize_checkpoint(path: Path) -> Path:
    """Generate the checkpoint at `path` unless a current one is there; return `path`."""
    marker = path / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == MARKER_CONTENT:
        return path
    sys.path.insert(0, str(REPO))
    import torch
    from transformers import Qwen3_5ForConditionalGeneration

    from deployments.engines.demo_models import build_config, build_image_processor, build_tokenizer

    tokenizer = build_tokenizer()
    config = build_config("0.8b", tokenizer)
    text = config.text_config
    for key, value in REAL_TEXT_DIMENSIONS.items():
        setattr(text, key, value)
    layers = REAL_TEXT_DIMENSIONS["num_hidden_layers"]
    text.layer_types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)]
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [11, 11, 10]}
    config.vision_config.out_hidden_size = REAL_TEXT_DIMENSIONS["hidden_size"]
    config.tie_word_embeddings = True
    torch.manual_seed(20261206)
    model = Qwen3_5ForConditionalGeneration(config).to(torch.bfloat16).eval()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    build_image_processor().save_pretrained(tmp)
    count = sum(p.numel() for p in model.parameters())
    (tmp / MARKER).write_text(json.dumps(MARKER_CONTENT, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    print(f"wrote a random-weight real-size 0.8B checkpoint ({count / 1e9:.2f} B parameters) to {path}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where (default: the cache's bench-models/)")
    args = parser.parse_args()
    print(ensure_realsize_checkpoint(args.out or default_path()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
