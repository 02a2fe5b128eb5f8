"""The checks every image passes before a model sees it, shared by the ingress (header only), the
engines (before decoding) and the batch reader, so the three refuse the same images the same way."""

from __future__ import annotations

import io

from deployments.engines.base import InvalidImageError

# The Qwen2-VL family's image processor (`smart_resize`) raises a ValueError for an image whose
# longer side is over 200 times its shorter; refusing it first names the image and keeps it a
# request error.
MAX_IMAGE_ASPECT_RATIO = 200
# The encodings images may arrive in (PIL format names). PIL would otherwise also open EPS (through
# Ghostscript, a long line of CVEs), PSD, ICNS and dozens of other rarely-audited decoders on bytes
# any caller chooses.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def open_image(data: bytes, label: str = "image"):
    """`data` opened by PIL from IMAGE_FORMATS only: lazily, so only the header is read yet.

    Raises:
        InvalidImageError: not one of IMAGE_FORMATS or an unreadable header (`invalid_image`), or
            an area past PIL's decompression-bomb guard (`image_too_large`); the message starts
            with `label`.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:  # its own message names an in-memory buffer
        raise InvalidImageError(
            f"{label} is not a recognised image format ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"{label} is too large to decode: {error}", code="image_too_large") from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL's parsers raise these on bad headers
        raise InvalidImageError(f"{label} has a header that could not be read: {error}") from None


def check_image_size(
    width: int, height: int, max_pixels: int, label: str = "image", setting: str = ""
) -> None:
    """Refuse an image the models cannot take by its size alone.

    Args:
        setting: the config field `max_pixels` comes from, named in the message when given.

    Raises:
        InvalidImageError: an empty side or one over MAX_IMAGE_ASPECT_RATIO times the other
            (`invalid_image`), or more than `max_pixels` (`image_too_large`).
    """
    if width < 1 or height < 1:
        raise InvalidImageError(f"{label} is {width}x{height} pixels")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{label} is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            + (f" ({setting})" if setting else ""),
            code="image_too_large",
        )
    if max(width, height) > MAX_IMAGE_ASPECT_RATIO * min(width, height):
        raise InvalidImageError(
            f"{label} is {width}x{height} pixels; its longer side may be at most "
            f"{MAX_IMAGE_ASPECT_RATIO} times its shorter"
        )
