"""TiTok / One-D-Piece image processor: the originals' eval transform, shorter side resized to
the model's size (bicubic, antialiased), centre crop, pixels in [0, 1] with no normalisation;
`postprocess` clamps decoded pixels to [0, 1] and returns RGB PIL images."""

from __future__ import annotations

from ...processing_utils import ModalImageProcessor


class TiTokImageProcessor(ModalImageProcessor):
    """`ModalImageProcessor` with TiTok's defaults (256 px, bicubic, centre crop, [0, 1])."""

    def __init__(self, image_size: int = 256, resample: str = "bicubic", do_center_crop: bool = True, **kwargs):
        kwargs.setdefault("value_range", (0.0, 1.0))
        super().__init__(image_size=image_size, resample=resample, do_center_crop=do_center_crop, **kwargs)
