"""TokenFlow image processor: the original's eval transform, ADM's `center_crop_arr` (halve the
image with a BOX filter while its shorter side is at least twice the target, bicubic-resize the
shorter side to the target with rounding, centre crop), `ToTensor`, `Normalize(0.5, 0.5)`, so
pixels lie in [-1, 1]; `postprocess` maps decoded pixels back to RGB PIL images (clamped, as the
original's `127.5 * x + 128` up to rounding)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ...processing_utils import ModalImageProcessor


class TokenFlowImageProcessor(ModalImageProcessor):
    """`ModalImageProcessor` with TokenFlow's defaults (256 px CLIP-B / 384 px SigLIP, ADM centre
    crop, [-1, 1])."""

    def __init__(self, image_size: int = 256, resample: str = "bicubic", do_center_crop: bool = True, **kwargs):
        kwargs.setdefault("value_range", (-1.0, 1.0))
        super().__init__(image_size=image_size, resample=resample, do_center_crop=do_center_crop, **kwargs)

    def _resize_crop(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or not self.do_center_crop:
            return super()._resize_crop(pixels)
        size = self.image_size
        image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        while min(*image.size) >= 2 * size:
            image = image.resize(tuple(side // 2 for side in image.size), resample=Image.Resampling.BOX)
        scale = size / min(*image.size)
        image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.Resampling.BICUBIC)
        array = np.asarray(image)
        top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
        array = array[top : top + size, left : left + size]
        return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255.0
