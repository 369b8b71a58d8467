"""FlexTok image processor: the original's eval transform (torchvision `Resize(256)` bilinear on
PIL images, `CenterCrop(256)`, `ToTensor`, `Normalize(0.5, 0.5)`), so pixels lie in [-1, 1];
`postprocess` maps decoded pixels from [-1, 1] back to RGB PIL images (clamped)."""

from __future__ import annotations

from ...processing_utils import ModalImageProcessor


class FlexTokImageProcessor(ModalImageProcessor):
    """`ModalImageProcessor` with FlexTok's defaults (256 px, bilinear, centre crop, [-1, 1])."""

    def __init__(self, image_size: int = 256, resample: str = "bilinear", do_center_crop: bool = True, **kwargs):
        kwargs.setdefault("value_range", (-1.0, 1.0))
        super().__init__(image_size=image_size, resample=resample, do_center_crop=do_center_crop, **kwargs)
