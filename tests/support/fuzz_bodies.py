"""Request bodies for fuzzing the API, derived at run time from the request models' JSON schemas.

`schema_strategy` walks the structure pydantic emits (objects, `$ref`, `anyOf`, arrays) itself and
hands every leaf (strings, numbers, enums, free-form objects such as tool parameters) to
hypothesis-jsonschema: whole-schema `from_schema` took ~0.2 s per chat body, too slow for thousands.
New request fields appear in the bodies without any change here.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# Image URLs a body may carry: each answers at once (no DNS lookups of random hosts offline).
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360"
        "f8cfc0f01f0005000201a5f6b4560000000049454e44ae426082"
    )
).decode()


def _image_url(
    size: tuple[int, int], mode: str = "RGB", image_format: str = "PNG", cut: int = 0, **save
) -> str:
    """A data URL of a real encoded image (its last `cut` bytes dropped): the shapes and encodings
    that reach the header check, the engine's decode and the image processor."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, image_format, **save)
    data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data[: len(data) - cut]).decode()


IMAGE_URLS = [
    "data:image/png;base64," + TINY_PNG,
    _image_url((300, 1)),  # past the processor's 200:1 aspect ratio
    _image_url((1, 300)),
    _image_url((200, 1)),  # at it
    _image_url((1, 1), "I;16"),
    _image_url((8, 8), "CMYK", "JPEG"),
    _image_url((8, 8), "P", "GIF"),
    _image_url((16, 16), "RGB", "EPS"),  # not an allowed format (Ghostscript)
    _image_url((64, 64), "RGB", "JPEG", cut=40),  # header intact, data cut short
    _image_url((20_000, 20_000), "1"),  # 400 MP in a few KB: over max_image_pixels
    "data:image/png;base64,@@notbase64@@",
    "data:text/html;base64,AAAA",
    "s3://not-allowed-bucket/secret.png",
    "https://127.0.0.1/loopback.png",
    "https://169.254.169.254/latest/meta-data",
    "ftp://example.com/a.png",
    "",
]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def schema_strategy(schema: dict[str, Any], defs: dict[str, Any], max_items: int = 3) -> st.SearchStrategy:
    """Values valid under `schema` (pydantic's JSON schema subset), leaves via hypothesis-jsonschema."""
    from hypothesis_jsonschema import from_schema

    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: schema_strategy(defs[name], defs, max_items))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([schema_strategy(option, defs, max_items) for option in schema[key]])
    if schema.get("type") == "object" and schema.get("properties"):
        required = set(schema.get("required", []))
        props = {name: schema_strategy(sub, defs, max_items) for name, sub in schema["properties"].items()}
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        low = schema.get("minItems", 0)
        return st.lists(
            schema_strategy(schema["items"], defs, max_items),
            min_size=low,
            max_size=max(low, min(schema.get("maxItems", max_items), max_items)),
        )
    return from_schema({**schema, "$defs": defs})


def model_body_strategy(model_cls) -> st.SearchStrategy:
    """Bodies valid under `model_cls`'s JSON schema (what the model itself may still refuse)."""
    schema = model_cls.model_json_schema()
    return schema_strategy(schema, schema.get("$defs", {}))


def tame(body: dict[str, Any], served: list[str], rng: random.Random) -> dict[str, Any]:
    """Keep a body cheap to answer: one token, one sample, a served model most of the time, and
    image URLs that answer at once."""
    body = dict(body)
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body or key == "max_tokens":
            body[key] = 1
    if "n" in body:
        body["n"] = rng.choice([1, 1, 2, 0, -1])
    if rng.random() < 0.7:
        body["model"] = rng.choice(served)
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            for part in message["content"]:
                if isinstance(part, dict) and isinstance(part.get("image_url"), dict):
                    part["image_url"]["url"] = rng.choice(IMAGE_URLS)
    return body


def mutate(body: dict[str, Any], rng: random.Random) -> bytes:
    """One mutation of a valid body, serialised: a field dropped, retyped or added; a container
    wrapped or deepened; an image part added; the bytes cut or corrupted."""
    value = json.loads(json.dumps(body))
    keys = list(value)
    kind = rng.randrange(11)
    if kind == 0 and keys:
        value.pop(rng.choice(keys))
    elif kind == 1 and keys:
        value[rng.choice(keys)] = rng.choice(
            [None, "", "x" * 50, -1, 0, 2**70, 1e308, -1e-9, True, [], {}, [None], {"a": 1}]
        )
    elif kind == 2:
        value["unknown_" + str(rng.randrange(1000))] = 1
    elif kind == 3 and value.get("messages"):
        message = rng.choice(value["messages"])
        if isinstance(message, dict):
            message[rng.choice(["role", "content", "name", "tool_calls", "tool_call_id"])] = rng.choice(
                ["wizard", 5, None, [], [{"type": "video"}], [{"type": "image_url"}], {"x": 1}]
            )
    elif kind == 4:
        value = rng.choice([[value], "string", 5, None, [[[[value]]]]])
    elif kind == 5:
        depth = rng.choice([10, 63, 65, 500])
        value["metadata"] = json.loads("[" * depth + "]" * depth)
    elif kind == 10 and value.get("messages"):
        message = rng.choice(value["messages"])
        if isinstance(message, dict):
            text = message.get("content") if isinstance(message.get("content"), str) else "look"
            image = {"type": "image_url", "image_url": {"url": rng.choice(IMAGE_URLS)}}
            message["content"] = [{"type": "text", "text": text}, image]
    raw = json.dumps(value).encode()
    if kind == 6:
        raw = raw[: rng.randrange(max(1, len(raw)))]
    elif kind == 7:
        at = rng.randrange(max(1, len(raw)))
        raw = raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]
    elif kind == 8:
        raw = raw.replace(b"1", b"NaN", 1).replace(b"true", b"Infinity", 1)
    elif kind == 9:
        raw = b"\xff\xfe" + raw
    return raw


def draw(strategy: st.SearchStrategy, count: int) -> list[Any]:
    """`count` values of `strategy`, the same ones on every run (derandomized)."""
    values: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy)
    def collect(value):
        values.append(value)

    collect()
    return values[:count]
