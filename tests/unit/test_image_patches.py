"""`ImagePatcher` computes what the checkpoint's own Qwen2-VL image processor computes."""

import pytest
from PIL import Image

from deployments.engines.image_patches import ImagePatcher

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def processor(demo_cache):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(
        str(demo_cache / "demo-models" / "qwen3.5-0.8b"), min_pixels=3136, max_pixels=200_704, backend="pil"
    )


def picture(width: int, height: int, seed: int) -> Image.Image:
    """Pixels that differ everywhere (a gradient and noise), so a misplaced patch cannot go unseen."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize(
    "size",
    [(448, 448), (640, 480), (1200, 1600), (37, 500), (20, 20), (3000, 200), (64, 64)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_patches_and_grid_match_the_image_processor(processor, size):
    images = [picture(*size, seed=1), picture(96, 80, seed=2)]
    expected = processor(images=images, return_tensors="pt")
    pixel_values, grid = ImagePatcher(processor)(images)
    assert grid.tolist() == expected["image_grid_thw"].tolist()
    assert pixel_values.shape == expected["pixel_values"].shape
    assert pixel_values.dtype == expected["pixel_values"].dtype
    # float32 rounding only: the processor rescales in float64, the patcher in one float32 multiply-add
    assert (pixel_values - expected["pixel_values"]).abs().max().item() < 1e-5


def test_settings_it_does_not_reproduce_fall_back_to_the_processor(processor):
    from copy import deepcopy

    fixed_size = deepcopy(processor)
    fixed_size.do_resize = False
    image = picture(64, 64, seed=3)
    expected = fixed_size(images=[image], return_tensors="pt")
    pixel_values, grid = ImagePatcher(fixed_size)([image])
    assert grid.tolist() == expected["image_grid_thw"].tolist()
    assert pixel_values.equal(expected["pixel_values"])
