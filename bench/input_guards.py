"""What the ingress's input guards cost, and what they keep from the model replicas.

    python bench/input_guards.py [--enum-sizes 1000,15000,25000] [--cache DIR]

- Image header check (`check_image_header`, every fetched image at the ingress) against the full
  decode the engine does (`decode_image`), per image size: microseconds of the one against
  milliseconds of the other, so reading the header first costs the good requests next to nothing.
- Grammar compile time of a JSON-schema `enum` by size on the 0.8b demo tokenizer (the engine's
  `GrammarCache`), the growth that `serving.limits.max_schema_enum_values` and
  `max_structured_chars` keep requests away from, and whether each size passes those limits; then
  the costliest specs of each kind that the default limits still accept.
Every figure is printed as one `name value` line, then one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _png(width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _median_s(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def image_figures(sizes: list[tuple[int, int]], repeat: int) -> dict:
    from deployments.engines.base import ImageInput
    from deployments.engines.prompting import MAX_DECODED_IMAGE_PIXELS, decode_image
    from deployments.openai.media import check_image_header

    figures = {}
    for width, height in sizes:
        data = _png(width, height)
        header = _median_s(lambda data=data: check_image_header(data, MAX_DECODED_IMAGE_PIXELS), repeat)
        decode = _median_s(
            lambda data=data: decode_image(ImageInput(data), 0, MAX_DECODED_IMAGE_PIXELS),
            max(3, repeat // 20),
        )
        name = f"image_{width}x{height}"
        figures[f"{name}_bytes"] = len(data)
        figures[f"{name}_header_us"] = round(header * 1e6, 1)
        figures[f"{name}_decode_ms"] = round(decode * 1e3, 2)
    return figures


def enum_figures(enum_sizes: list[int], cache: Path) -> dict:
    from transformers import AutoTokenizer

    from cluster.config import LimitsConfig
    from deployments.engines.base import StructuredOutput
    from deployments.engines.demo_models import ensure_demo_models
    from deployments.engines.structured import GrammarCache
    from deployments.openai.protocol import OpenAIError
    from deployments.openai.structured import SpecValidator

    ensure_demo_models(cache, ["0.8b"])
    tokenizer = AutoTokenizer.from_pretrained(cache / "demo-models" / "qwen3.5-0.8b")
    validator = SpecValidator(LimitsConfig())
    figures = {}
    for size in enum_sizes:
        spec = StructuredOutput("json_schema", json.dumps({"enum": [f"value {i}" for i in range(size)]}))
        try:
            validator.check(spec, "response_format")
            passes = True
        except OpenAIError:
            passes = False
        grammars = GrammarCache(tokenizer, len(tokenizer), [tokenizer.eos_token_id])  # cold cache
        started = time.perf_counter()
        grammars.compile(spec)
        figures[f"enum_{size}_compile_s"] = round(time.perf_counter() - started, 3)
        figures[f"enum_{size}_spec_chars"] = len(spec.spec)
        figures[f"enum_{size}_passes_limits"] = passes
    # The costliest specs the default limits still accept: how long a compile can hold the grammar
    # thread (and a core) for one request.
    limits = LimitsConfig()
    value_chars = limits.max_structured_chars // limits.max_schema_enum_values - 5  # room for "{i} "
    long_value = "x" * value_chars
    properties = limits.max_schema_properties
    at_limits = {
        f"limit_enum_{limits.max_schema_enum_values}x{value_chars + 4}": StructuredOutput(
            "json_schema", json.dumps({"enum": [f"{i:03d} {long_value}" for i in range(1000)]})
        ),
        f"limit_optional_properties_{properties}": StructuredOutput(
            "json_schema",
            json.dumps(
                {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(properties)}}
            ),
        ),
        f"limit_choice_{limits.max_schema_enum_values}x{value_chars + 4}": StructuredOutput(
            "choice", json.dumps([f"{i:03d} {long_value}" for i in range(1000)])
        ),
        "limit_regex_alternation": StructuredOutput(
            "regex",
            "(" + "|".join(f"{i}{long_value[:20]}" for i in range(limits.max_structured_chars // 26)) + ")",
        ),
    }
    for name, spec in at_limits.items():
        validator.check(spec, "response_format")  # raises if the defaults refuse it
        grammars = GrammarCache(tokenizer, len(tokenizer), [tokenizer.eos_token_id])
        started = time.perf_counter()
        grammars.compile(spec)
        figures[f"{name}_compile_s"] = round(time.perf_counter() - started, 3)
        figures[f"{name}_spec_chars"] = len(spec.spec)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image-sizes", default="256x256,1024x1024,2048x2048")
    parser.add_argument("--repeat", type=int, default=200, help="header checks per image size")
    parser.add_argument("--enum-sizes", default="1000,15000,25000")
    parser.add_argument("--cache", help="demo checkpoint cache (default: a temporary folder)")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.image_sizes.split(",") if size]
    figures = image_figures(sizes, args.repeat)
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="input-guards-"))
    enum_sizes = [int(v) for v in args.enum_sizes.split(",") if v]
    if enum_sizes:
        figures.update(enum_figures(enum_sizes, cache))
    for name, value in figures.items():
        print(name, value)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
