"""Processor bases shared by the families.

`ModalImageProcessor` (an `AutoImageProcessor`) and `ModalAudioFeatureExtractor` (an
`AutoFeatureExtractor`) validate raw input, bring it to the model's size / sampling rate / value
range, batch it, and turn model output back into PIL images or numpy audio (`postprocess`).
Bad input raises `ValueError` naming what was expected.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from transformers import BatchFeature
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.image_processing_utils import BaseImageProcessor

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def _as_list(items, single_item_ndim: int) -> list:
    """A single item (PIL image, or an array of rank <= single_item_ndim) becomes a list of one."""
    if isinstance(items, (Image.Image, np.ndarray, torch.Tensor)):
        if isinstance(items, Image.Image) or items.ndim <= single_item_ndim:
            return [items]
        return list(items)
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        if len(items) == 0:
            raise ValueError("expected at least one item, got an empty list")
        return list(items)
    raise ValueError(f"expected a PIL image, numpy array, torch tensor or a list of them, got {type(items).__name__}")


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or Inf values")


class ModalImageProcessor(BaseImageProcessor):
    """Resize (shorter side) + centre crop to `image_size`, scale to `value_range`.

    Accepts PIL images (any mode), numpy arrays `[H, W]` / `[H, W, C]` and tensors `[C, H, W]` /
    `[H, W]` with C in {1, 3, 4} (grayscale is repeated, alpha is composited on white), either
    uint8 in [0, 255] or floating point in [0, 1]. uint8 input is resized by PIL as the
    originals' torchvision pipelines do; float input by torchvision with antialiasing.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_size: int = 256,
        resample: str = "bicubic",
        do_center_crop: bool = True,
        value_range: tuple[float, float] = (0.0, 1.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        self.image_size = int(image_size)
        self.resample = resample
        self.do_center_crop = do_center_crop
        self.value_range = tuple(float(v) for v in value_range)

    @classmethod
    def from_model_config(cls, config) -> ModalImageProcessor:
        return cls(image_size=config.image_size)

    # ----- input ---------------------------------------------------------------------------------
    def _to_uint8_or_float_chw(self, image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            image = np.asarray(image.convert("RGB"))
        if isinstance(image, torch.Tensor):
            tensor = image.detach().cpu()
            if tensor.ndim == 3 and tensor.shape[0] not in (1, 3, 4):
                raise ValueError(f"expected a tensor image [C, H, W] with C in (1, 3, 4), got shape {tuple(tensor.shape)}")
            array = tensor.numpy()
            if array.ndim == 3:
                array = np.moveaxis(array, 0, -1)
        elif isinstance(image, np.ndarray):
            array = image
        else:
            raise ValueError(f"expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")

        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected an image [H, W], [H, W, C] (numpy) or [C, H, W] (tensor) with C in (1, 3, 4), got shape {array.shape}")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"image is empty (shape {array.shape})")
        if array.dtype == np.uint8:
            pixels = torch.from_numpy(np.array(array, copy=True))
        elif np.issubdtype(array.dtype, np.floating):
            _check_finite(array, "image")
            if array.min() < 0.0 or array.max() > 1.0:
                raise ValueError(f"float images must lie in [0, 1], got values in [{array.min():.3g}, {array.max():.3g}]")
            pixels = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        else:
            raise ValueError(f"expected uint8 pixels in [0, 255] or float pixels in [0, 1], got dtype {array.dtype}")

        if pixels.shape[-1] == 4:  # composite alpha on white
            alpha = pixels[..., 3:].float() / (255.0 if pixels.dtype == torch.uint8 else 1.0)
            top = 255.0 if pixels.dtype == torch.uint8 else 1.0
            rgb = pixels[..., :3].float() * alpha + top * (1 - alpha)
            pixels = rgb.round().to(torch.uint8) if pixels.dtype == torch.uint8 else rgb
        if pixels.shape[-1] == 1:
            pixels = pixels.expand(*pixels.shape[:2], 3)
        return pixels.permute(2, 0, 1).contiguous()

    def _resize_crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """`[3, H, W]` uint8 or float -> float `[3, S, S]` in [0, 1]."""
        height, width = pixels.shape[-2:]
        scale = self.image_size / min(height, width)
        # as torchvision's Resize(int): the shorter side becomes image_size exactly
        if height <= width:
            new_size = (self.image_size, int(self.image_size * width / height))
        else:
            new_size = (int(self.image_size * height / width), self.image_size)
        if pixels.dtype == torch.uint8:
            image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
            if scale != 1.0:
                image = image.resize(new_size[::-1], _RESAMPLE[self.resample])
            pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        elif scale != 1.0:
            mode = TF.InterpolationMode.BICUBIC if self.resample == "bicubic" else TF.InterpolationMode.BILINEAR
            pixels = TF.resize(pixels, list(new_size), interpolation=mode, antialias=True).clamp(0.0, 1.0)
        if self.do_center_crop:
            pixels = TF.center_crop(pixels, [self.image_size, self.image_size])
        elif pixels.shape[-2:] != (self.image_size, self.image_size):
            pixels = TF.resize(pixels, [self.image_size, self.image_size], antialias=True)
        return pixels

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        low, high = self.value_range
        batch = [self._resize_crop(self._to_uint8_or_float_chw(image)) for image in _as_list(images, 3)]
        pixel_values = torch.stack(batch) * (high - low) + low
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Pushes the processor config alone; the model card comes with the model's push."""
        hub = _modalzoo_hub()
        return super().push_to_hub(repo_id, **kwargs) if hub is None else hub.push_processor(self, repo_id, **kwargs)

    # ----- output --------------------------------------------------------------------------------
    def postprocess(self, values: torch.Tensor) -> list[Image.Image]:
        """Model output `[B, 3, H, W]` in `value_range` -> RGB PIL images (clamped)."""
        if values.ndim != 4 or values.shape[1] != 3:
            raise ValueError(f"expected values [B, 3, H, W], got shape {tuple(values.shape)}")
        low, high = self.value_range
        unit = ((values.detach().float().cpu() - low) / (high - low)).clamp(0.0, 1.0)
        arrays = (unit * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(array) for array in arrays]


class ModalAudioFeatureExtractor(SequenceFeatureExtractor):
    """Mono audio at `sampling_rate`, padded to a multiple of `hop_length`.

    Accepts a 1-D array `[samples]`, a 2-D array `[channels, samples]` (or `[samples, channels]`
    as soundfile returns it) with 1 or 2 channels (stereo is averaged), or a list of them. The
    input's `sampling_rate` must be given; other rates are resampled with torchaudio. Returns
    `input_values` `[B, 1, T]` and `padding_mask` `[B, T]` (1 on real samples), as transformers'
    codec feature extractors do.
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(self, sampling_rate: int = 24000, hop_length: int = 320, padding_value: float = 0.0, **kwargs):
        kwargs.pop("feature_size", None)  # always mono; saved configs carry it
        super().__init__(feature_size=1, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.hop_length = int(hop_length)

    @classmethod
    def from_model_config(cls, config) -> ModalAudioFeatureExtractor:
        return cls(sampling_rate=config.sampling_rate, hop_length=config.hop_length)

    def _to_mono(self, audio) -> torch.Tensor:
        array = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"expected floating-point samples in [-1, 1], got dtype {array.dtype} "
                "(divide 16-bit PCM by 32768 first)"
            )
        if array.ndim == 2:
            if array.shape[0] in (1, 2) and array.shape[1] > 2:
                array = array.mean(axis=0)
            elif array.shape[1] in (1, 2) and array.shape[0] > 2:
                array = array.mean(axis=1)
            else:
                raise ValueError(f"expected audio [channels, samples] with 1 or 2 channels, got shape {array.shape}")
        elif array.ndim != 1:
            raise ValueError(f"expected audio [samples] or [channels, samples], got shape {array.shape}")
        if array.size == 0:
            raise ValueError("audio is empty")
        _check_finite(array, "audio")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def __call__(self, raw_audio, sampling_rate: int | None = None, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if sampling_rate is None:
            raise ValueError(
                f"sampling_rate must be given (this model expects {self.sampling_rate} Hz; other rates are resampled)"
            )
        items = [self._to_mono(item) for item in _as_list(raw_audio, 1 if not _is_multichannel(raw_audio) else 2)]
        if sampling_rate != self.sampling_rate:
            items = [torchaudio.functional.resample(item, int(sampling_rate), self.sampling_rate) for item in items]
        lengths = [item.shape[-1] for item in items]
        shortest = min(lengths)
        if shortest < self.hop_length:
            raise ValueError(
                f"audio is shorter than one frame: {shortest} samples at {self.sampling_rate} Hz, "
                f"need at least {self.hop_length}"
            )
        padded_length = -(-max(lengths) // self.hop_length) * self.hop_length
        input_values = torch.full((len(items), 1, padded_length), float(self.padding_value))
        padding_mask = torch.zeros((len(items), padded_length), dtype=torch.long)
        for index, item in enumerate(items):
            input_values[index, 0, : item.shape[-1]] = item
            padding_mask[index, : item.shape[-1]] = 1
        return BatchFeature({"input_values": input_values, "padding_mask": padding_mask}, tensor_type=return_tensors)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Pushes the feature extractor config alone; the model card comes with the model's push."""
        hub = _modalzoo_hub()
        return super().push_to_hub(repo_id, **kwargs) if hub is None else hub.push_processor(self, repo_id, **kwargs)

    def postprocess(self, values: torch.Tensor, values_mask: torch.Tensor | None = None) -> list[np.ndarray]:
        """Decoded `[B, 1, T]` audio -> one float32 numpy array per item at `sampling_rate`,
        trimmed to its own length when `values_mask` is given."""
        if values.ndim != 3 or values.shape[1] != 1:
            raise ValueError(f"expected values [B, 1, T], got shape {tuple(values.shape)}")
        audio = values.detach().float().cpu()[:, 0]
        if values_mask is None:
            return [item.numpy() for item in audio]
        return [item[mask.bool().cpu()].numpy() for item, mask in zip(audio, values_mask)]


def _modalzoo_hub():
    """`modalzoo.hub` (which pushes without a generic model card), or None where this file runs
    as code exported with a repo (trust_remote_code) and modalzoo is not installed."""
    try:
        return importlib.import_module("modalzoo.hub")
    except ImportError:
        return None


def _is_multichannel(raw_audio) -> bool:
    """A single 2-D array with a 1- or 2-sized axis is one multi-channel item, not a batch."""
    if isinstance(raw_audio, (np.ndarray, torch.Tensor)) and raw_audio.ndim == 2:
        return min(raw_audio.shape) in (1, 2)
    return False
