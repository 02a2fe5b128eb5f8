"""Image checks and resizing before inference."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipelines.imaging import fit_image, read_header, scale_to_fit
from pipelines.schema import ErrorKind, RowError
from tests.support.sample_corpus import make_huge_image, make_image

pytestmark = pytest.mark.unit


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_small_supported_images_pass_unchanged():
    data = make_image(100, 80, "webp", 1)
    assert fit_image(data, target_pixels=10_000, max_pixels=1_000_000, image_format="png") == data


def test_large_images_shrink_to_the_target_keeping_aspect():
    data = make_image(1200, 600, "jpeg", 2)
    image = decoded(fit_image(data, target_pixels=50_000, max_pixels=10_000_000, image_format="png"))
    assert image.format == "PNG" and image.width * image.height <= 50_000
    assert abs(image.width / image.height - 2.0) < 0.02


def test_tiff_is_reencoded_even_when_small():
    data = make_image(64, 64, "tiff", 3)
    image = decoded(fit_image(data, target_pixels=100_000, max_pixels=1_000_000, image_format="jpeg"))
    assert image.format == "JPEG" and image.size == (64, 64)


def test_refusals():
    with pytest.raises(RowError) as too_large:
        fit_image(make_huge_image(2_000_000), target_pixels=1000, max_pixels=1_000_000, image_format="png")
    assert (
        too_large.value.kind == ErrorKind.IMAGE_TOO_LARGE and "limit is 1,000,000" in too_large.value.message
    )
    with pytest.raises(RowError) as garbage:
        fit_image(
            b"\x00\x01 definitely not an image", target_pixels=1000, max_pixels=10_000, image_format="png"
        )
    assert garbage.value.kind == ErrorKind.INVALID_IMAGE
    with pytest.raises(RowError) as empty:
        read_header(b"")
    assert empty.value.kind == ErrorKind.EMPTY


def test_truncated_image_is_invalid():
    data = make_image(800, 800, "png", 4)
    with pytest.raises(RowError) as error:
        fit_image(data[: len(data) // 2], target_pixels=1000, max_pixels=10_000_000, image_format="png")
    assert error.value.kind == ErrorKind.INVALID_IMAGE


def test_scale_to_fit():
    assert scale_to_fit(100, 50, 10_000) == (100, 50)
    width, height = scale_to_fit(4000, 3000, 1_200_000)
    assert width * height <= 1_200_000 and abs(width / height - 4 / 3) < 0.01


@pytest.mark.parametrize("image_format", ["EPS", "ICO", "PCX"])
def test_formats_outside_the_allow_list_are_invalid(image_format):
    # PIL decodes EPS through Ghostscript; an object named page.png holding one must not reach it.
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, image_format)
    with pytest.raises(RowError) as error:
        read_header(buffer.getvalue())
    assert error.value.kind == ErrorKind.INVALID_IMAGE
    assert "not a recognised image format (PNG, JPEG" in error.value.message
