"""Qwen-VL image patches straight from a decoded PIL image: what the checkpoint's Qwen2-VL image
processor computes, without its per-step array conversions.

transformers' PIL-backed processor turns each image into a channels-first array, back into a PIL
image to resize, back into an array, then rescales in float64 and normalises in a second pass. On
the batch job's pages that was a fifth to a third of an inference actor's busy time. Here the image
is resized once by PIL (same filter, same target size from transformers' own `smart_resize`), the
patches are laid out while the pixels are still bytes, and rescale and normalise are one float32
multiply-add. The output matches the processor's to float32 rounding (a unit test holds it to
that), and settings this module does not reproduce fall back to the processor.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ImagePatcher:
    """Turns RGB PIL images into `(pixel_values, image_grid_thw)` as `image_processor(images=...)`
    would, for a Qwen2-VL-family image processor.

    Args:
        image_processor: the checkpoint's loaded image processor; its settings (target area bounds,
            filter, mean/std, patch, merge and temporal patch sizes) are read once here.
    """

    def __init__(self, image_processor: Any):
        # the PIL-backed module: the other imports torchvision, absent on CPU machines
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        self.smart_resize = smart_resize
        self.image_processor = image_processor
        self.patch = int(image_processor.patch_size)
        self.merge = int(image_processor.merge_size)
        self.temporal = int(image_processor.temporal_patch_size)
        size = image_processor.size
        self.min_pixels = int(size.shortest_edge)
        self.max_pixels = int(size.longest_edge)
        self.resample = image_processor.resample
        mean = np.asarray(image_processor.image_mean, dtype=np.float32)
        std = np.asarray(image_processor.image_std, dtype=np.float32)
        rescale = float(image_processor.rescale_factor) if image_processor.do_rescale else 1.0
        normalize = bool(image_processor.do_normalize)
        # (x * rescale - mean) / std as one multiply-add per channel
        self._scale = (rescale / std if normalize else np.full(3, rescale)).astype(np.float32)
        self._offset = (-mean / std if normalize else np.zeros(3)).astype(np.float32)
        self.fast = bool(image_processor.do_resize) and len(mean) == 3 and len(std) == 3

    def __call__(self, images: list) -> tuple[Any, Any]:
        """Pixel patches `(patches, 3 * temporal * patch * patch)` and grids `(images, 3)`, as torch
        tensors, for RGB PIL images."""
        import torch

        if not self.fast:
            processed = self.image_processor(images=images, return_tensors="pt")
            return processed["pixel_values"], processed["image_grid_thw"]
        patches, grids = [], []
        for image in images:
            flat, grid_h, grid_w = self._patches(image)
            patches.append(flat)
            grids.append((1, grid_h, grid_w))
        pixel_values = patches[0] if len(patches) == 1 else np.concatenate(patches)
        return torch.from_numpy(pixel_values), torch.tensor(grids, dtype=torch.long)

    def _patches(self, image) -> tuple[np.ndarray, int, int]:
        width, height = image.size
        factor = self.patch * self.merge
        target_h, target_w = self.smart_resize(
            height, width, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        if (target_w, target_h) != (width, height):
            image = image.resize((target_w, target_h), resample=self.resample)
        grid_h, grid_w = target_h // self.patch, target_w // self.patch
        m, p = self.merge, self.patch
        # Lay the patches out while the pixels are still bytes (a quarter of the memory traffic):
        # (grid_h/m, grid_w/m, m, m, C, p, p) is merge windows in row-major order, channels first.
        blocks = np.asarray(image).reshape(grid_h // m, m, p, grid_w // m, m, p, 3)
        blocks = np.ascontiguousarray(blocks.transpose(0, 3, 1, 4, 6, 2, 5)).reshape(
            grid_h * grid_w, 3, 1, p * p
        )
        frame = blocks * self._scale[None, :, None, None]
        frame += self._offset[None, :, None, None]
        # A still image fills every temporal slot of a patch with the same frame.
        pixels = np.empty((grid_h * grid_w, 3, self.temporal, p * p), dtype=np.float32)
        pixels[...] = frame
        return pixels.reshape(grid_h * grid_w, -1), grid_h, grid_w
