"""Two reference tokenizers: a patch-VQ image tokenizer and a frame-RVQ audio codec.

Each frame / patch is encoded independently (kernel == stride), so a padded item encodes to
exactly the codes it gets alone: the property the contract asks of every batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers import ResidualVectorQuantizer, VectorQuantizer
from .configuration_reference import ReferenceAudioConfig, ReferenceImageConfig


def check_pixel_values(pixel_values: torch.Tensor, image_size: int) -> None:
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must be [batch, 3, height, width], got {tuple(pixel_values.shape)}")
    if tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"pixel_values must be {image_size}x{image_size} for this model, got "
            f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]} (use the model's image processor)"
        )


def check_input_values(input_values: torch.Tensor, padding_mask: torch.Tensor | None, hop_length: int) -> None:
    if input_values.ndim != 3 or input_values.shape[1] != 1:
        raise ValueError(f"input_values must be mono [batch, 1, samples], got {tuple(input_values.shape)}")
    if input_values.shape[-1] < hop_length:
        raise ValueError(f"input_values has {input_values.shape[-1]} samples, fewer than one frame ({hop_length})")
    if padding_mask is not None and tuple(padding_mask.shape) != (input_values.shape[0], input_values.shape[-1]):
        raise ValueError(
            f"padding_mask must be [batch, samples] = {(input_values.shape[0], input_values.shape[-1])}, "
            f"got {tuple(padding_mask.shape)}"
        )


def frames_mask(padding_mask: torch.Tensor, hop_length: int, num_frames: int) -> torch.BoolTensor:
    """A frame is real when it holds at least one real sample."""
    lengths = padding_mask.long().sum(-1)
    frame_lengths = (lengths + hop_length - 1) // hop_length
    return torch.arange(num_frames, device=padding_mask.device)[None] < frame_lengths[:, None]


class ReferenceImageTokenizer(ModalTokenizer):
    config_class = ReferenceImageConfig
    modality = "image"
    main_input_name = "pixel_values"
    input_modalities = "image"

    def __init__(self, config: ReferenceImageConfig):
        super().__init__(config)
        self.patchify = nn.Conv2d(3, config.hidden_size, config.patch_size, stride=config.patch_size)
        self.quantizer = VectorQuantizer(
            dim=config.hidden_size, codebook_size=config.codebook_size, codebook_dim=config.codebook_dim,
            use_cosine_sim=True,
        )
        self.unpatchify = nn.ConvTranspose2d(config.hidden_size, 3, config.patch_size, stride=config.patch_size)
        self.post_init()

    @property
    def grid_size(self) -> int:
        return self.config.image_size // self.config.patch_size

    def _quantize(self, pixel_values: torch.Tensor):
        check_pixel_values(pixel_values, self.config.image_size)
        features = self.patchify(pixel_values).flatten(2).transpose(1, 2)
        return self.quantizer(features)

    def encode(self, pixel_values: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(codes=self._quantize(pixel_values).codes)

    def _render(self, vectors: torch.Tensor) -> torch.Tensor:
        grid = vectors.transpose(1, 2).reshape(vectors.shape[0], -1, self.grid_size, self.grid_size)
        return self.unpatchify(grid)

    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None) -> DecoderOutput:
        codes = self.check_codes(codes)
        if codes.shape[-1] != self.max_tokens:
            raise ValueError(f"this model decodes exactly {self.max_tokens} codes per image, got {codes.shape[-1]}")
        return DecoderOutput(values=self._render(self.quantizer.lookup(codes)))

    def forward(self, pixel_values: torch.Tensor) -> TokenizerOutput:
        quantized = self._quantize(pixel_values)
        values = self._render(quantized.quantized)
        losses = {"reconstruction": F.mse_loss(values, pixel_values), "quantizer": quantized.loss}
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=quantized.codes, values=values)


class ReferenceAudioTokenizer(ModalTokenizer):
    config_class = ReferenceAudioConfig
    modality = "audio"
    main_input_name = "input_values"
    input_modalities = "audio"

    def __init__(self, config: ReferenceAudioConfig):
        super().__init__(config)
        self.frame_encoder = nn.Conv1d(1, config.hidden_size, config.hop_length, stride=config.hop_length)
        self.quantizer = ResidualVectorQuantizer(
            dim=config.hidden_size, num_quantizers=config.num_quantizers, codebook_size=config.codebook_size
        )
        self.frame_decoder = nn.ConvTranspose1d(config.hidden_size, 1, config.hop_length, stride=config.hop_length)
        self.post_init()

    def _quantize(self, input_values, padding_mask, num_quantizers):
        check_input_values(input_values, padding_mask, self.config.hop_length)
        if input_values.shape[-1] % self.config.hop_length:
            raise ValueError(
                f"input length {input_values.shape[-1]} is not a multiple of the hop ({self.config.hop_length}); "
                "the feature extractor pads to it"
            )
        features = self.frame_encoder(input_values).transpose(1, 2)
        mask = None if padding_mask is None else frames_mask(padding_mask, self.config.hop_length, features.shape[1])
        return self.quantizer(features, num_quantizers=num_quantizers), mask

    def encode(
        self, input_values: torch.Tensor, *, padding_mask: torch.Tensor | None = None, num_quantizers: int | None = None
    ) -> EncoderOutput:
        quantized, mask = self._quantize(input_values, padding_mask, num_quantizers)
        return EncoderOutput(codes=quantized.codes, codes_mask=mask)

    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None) -> DecoderOutput:
        codes = self.check_codes(codes)
        values = self.frame_decoder(self.quantizer.lookup(codes).transpose(1, 2))
        values_mask = None
        if codes_mask is not None:
            values_mask = codes_mask.bool().repeat_interleave(self.config.hop_length, dim=-1)
            values = values * values_mask[:, None]
        return DecoderOutput(values=values, values_mask=values_mask)

    def forward(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None) -> TokenizerOutput:
        quantized, _ = self._quantize(input_values, padding_mask, None)
        values = self.frame_decoder(quantized.quantized.transpose(1, 2))
        weight = torch.ones_like(input_values) if padding_mask is None else padding_mask[:, None].to(values.dtype)
        reconstruction = ((values - input_values) ** 2 * weight).sum() / weight.sum().clamp_min(1)
        losses = {"reconstruction": reconstruction, "quantizer": quantized.loss}
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=quantized.codes, values=values)
