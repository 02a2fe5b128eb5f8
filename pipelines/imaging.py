"""Image checks and resizing: refuse what is not an image or too big, shrink to the engine's limit.

The engine resizes again to its exact patch grid; shrinking here first keeps big scans and photos
from crossing the object store and the engine's processor at full size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from deployments.engines.base import InvalidImageError
from deployments.engines.image_checks import IMAGE_FORMATS, open_image
from pipelines.schema import ErrorKind, RowError

# Formats the engine decodes as they are; anything else (TIFF, BMP, GIF, ...) is re-encoded.
PASSTHROUGH_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding the pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """Identify an encoded image.

    Raises:
        RowError: `empty_file` for no bytes, `invalid_image` for bytes that are not an image,
            `image_too_large` for an area past PIL's own decompression-bomb limit.
    """
    if not data:
        raise RowError(ErrorKind.EMPTY, "the file is empty")
    try:
        with open_image(data) as probe:
            return ImageHeader(str(probe.format or "UNKNOWN"), int(probe.width), int(probe.height))
    except InvalidImageError as error:
        kind = ErrorKind.IMAGE_TOO_LARGE if error.code == "image_too_large" else ErrorKind.INVALID_IMAGE
        raise RowError(kind, error.message) from None


def scale_to_fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio whose area is at most `max_pixels`."""
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * factor)), max(1, int(height * factor))


def encode_image(image, image_format: str) -> bytes:
    """Encode a PIL image as PNG or JPEG."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def fit_image(data: bytes, *, target_pixels: int, max_pixels: int, image_format: str) -> bytes:
    """Check an encoded image and shrink it to at most `target_pixels`.

    Images already small enough and in a format the engine reads are returned unchanged.

    Args:
        data: the encoded image.
        target_pixels: the engine's image_max_pixels.
        max_pixels: the largest decoded area accepted at all (guards decompression bombs).
        image_format: `png` or `jpeg`, for images that are re-encoded.

    Raises:
        RowError: `empty_file`, `invalid_image` or `image_too_large`.
    """
    from PIL import Image

    header = read_header(data)
    if header.pixels > max_pixels:
        raise RowError(
            ErrorKind.IMAGE_TOO_LARGE,
            f"image is {header.width}x{header.height} = {header.pixels:,} pixels; the limit is {max_pixels:,}",
        )
    if header.pixels <= target_pixels and header.format in PASSTHROUGH_FORMATS:
        return data
    width, height = scale_to_fit(header.width, header.height, target_pixels)
    try:
        # PIL's own bomb guard would refuse images we already accepted above.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if header.format == "JPEG":
                image.draft("RGB", (width, height))  # decode at a reduced scale: much faster
            image.load()
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise RowError(ErrorKind.INVALID_IMAGE, f"image could not be decoded: {error}") from None
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return encode_image(rgb, image_format)
