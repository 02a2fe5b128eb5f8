"""Turn a `GenerationRequest` into token ids and pixel inputs for a Qwen3.5 checkpoint.

This is the work `Qwen3VLProcessor` does, without its video processor (which needs torchvision,
absent on CPU machines): render the chat template, cut images into patches as the checkpoint's image
processor does (`ImagePatcher`), and expand each `<|image_pad|>` into as many tokens as the image
has merged patches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from deployments.engines.base import ChatMessage, GenerationRequest, ImageInput, InvalidImageError
from deployments.engines.image_checks import check_image_size, open_image
from deployments.engines.image_patches import ImagePatcher

IMAGE_PAD = "<|image_pad|>"
# Largest decoded image area an engine accepts before resizing (guards decompression bombs); the
# ingress applies its own configurable limit (serving.media.max_image_pixels) before this.
MAX_DECODED_IMAGE_PIXELS = 40_000_000


@dataclass
class PreparedPrompt:
    """Token ids and vision inputs of one request, ready to batch."""

    input_ids: list[int]
    pixel_values: Any | None  # torch.Tensor (patches, dim) or None
    image_grid_thw: Any | None  # torch.Tensor (images, 3) or None
    thinking: bool

    @property
    def num_tokens(self) -> int:
        """Prompt length in tokens, image tokens included."""
        return len(self.input_ids)


def decode_image(image: ImageInput, index: int, max_pixels: int):
    """Decode one image into RGB, refusing bytes that are not an image and oversized images.

    Raises:
        InvalidImageError: naming which image (0-based, in conversation order) and why.
    """
    from PIL import Image

    label = f"image {index}" + (f" ({image.source[:80]})" if image.source else "")
    try:
        with open_image(image.data, label) as probe:
            check_image_size(*probe.size, max_pixels, label)
            probe.load()
            return probe.convert("RGB")
    except InvalidImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidImageError(f"{label} could not be decoded as an image: {error}") from None


def render_chat(tokenizer, request: GenerationRequest, thinking: bool) -> str:
    """The chat request as the checkpoint's template writes it: messages, the tools it offers (so the
    model knows what it may call), the generation prompt and the thinking switch. Both engines
    render through here, so a request means the same prompt on either."""
    return tokenizer.apply_chat_template(
        template_messages(request.messages or []),
        tools=request.tools or None,
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=thinking,
    )


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages in the structure the chat template expects (OpenAI-like parts).

    Assistant `tool_calls` keep the OpenAI shape, but with `arguments` as a mapping: Qwen3.5's
    template iterates `tool_call.arguments|items` to write one `<parameter=...>` per argument.
    """
    rendered = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImageInput):
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part})
        entry: dict[str, Any] = {"role": message.role, "content": parts}
        if message.tool_calls:
            entry["tool_calls"] = [_template_call(call) for call in message.tool_calls]
        if message.tool_call_id is not None:
            entry["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            entry["name"] = message.name
        rendered.append(entry)
    return rendered


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function", {}))
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            function["arguments"] = parsed
    return {**call, "function": function}


# Longest text tokenized by the backend's single-text call, which holds the GIL (about 2 ms at this
# length; 160 ms at 250,000 characters, during which no decode step could run). Longer texts take the
# wrapper's batch call, which lets the other threads run while it works.
GIL_HOLDING_ENCODE_MAX_CHARS = 4096


class PromptBuilder:
    """Builds `PreparedPrompt`s for one checkpoint.

    Args:
        tokenizer: the checkpoint's tokenizer (with its chat template).
        image_processor: the checkpoint's Qwen2-VL image processor.
        max_images: most images per request.
        max_decoded_pixels: largest decoded image area accepted before resizing.
    """

    def __init__(self, tokenizer, image_processor, max_images: int, max_decoded_pixels: int):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_images = max_images
        self.max_decoded_pixels = max_decoded_pixels
        self.merge_length = image_processor.merge_size**2
        # The wrapper's `tokenizer(text)` goes through the Rust backend's batch call, which releases
        # the GIL and then waits for it: while the decode loop or the event loop holds it, that wait
        # is a whole switch interval (5 ms) per prompt, against about 0.1 ms for the backend's own
        # single-text call, which gives the same ids when special tokens are not split. That call
        # holds the GIL throughout, so only short texts take it (`encode`).
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = (
            backend if backend is not None and not getattr(tokenizer, "split_special_tokens", False) else None
        )

    def build(self, request: GenerationRequest, thinking: bool) -> PreparedPrompt:
        """Render, tokenize and process images.

        Raises:
            InvalidImageError: too many images, or one that does not decode.
        """
        if request.prompt is not None:
            return PreparedPrompt(self.encode(request.prompt), None, None, thinking=False)
        images = request.images
        if len(images) > self.max_images:
            raise InvalidImageError(
                f"the request carries {len(images)} images; this model accepts at most {self.max_images}",
                code="too_many_images",
            )
        text = render_chat(self.tokenizer, request, thinking)
        pixel_values = grid = None
        if images:
            decoded = [decode_image(image, i, self.max_decoded_pixels) for i, image in enumerate(images)]
            pixel_values, grid = self._patcher(decoded)
            text = self._expand_image_tokens(text, grid)
        return PreparedPrompt(self.encode(text), pixel_values, grid, thinking=thinking)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added (those in the text are kept whole)."""
        if self._backend is not None and len(text) <= GIL_HOLDING_ENCODE_MAX_CHARS:
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @cached_property
    def _patcher(self) -> ImagePatcher:
        return ImagePatcher(self.image_processor)

    def _expand_image_tokens(self, text: str, grid) -> str:
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(grid):
            raise InvalidImageError(
                f"the chat template placed {len(pieces) - 1} image slots for {len(grid)} images"
            )
        out = [pieces[0]]
        for thw, rest in zip(grid, pieces[1:], strict=True):
            out.append(IMAGE_PAD * (int(thw.prod()) // self.merge_length))
            out.append(rest)
        return "".join(out)
