"""TiTok configuration: plain fields for the ViT encoder/decoder, the quantizer and the
MaskGIT-VQGAN pixel decoder of the legacy checkpoints.

Released layouts (bytedance/1d-tokenizer, configs/infer/TiTok):

* legacy (`is_legacy=True`: L-32, B-64, S-128, and every One-D-Piece model): the encoder's latent
  tokens go through the original's no-permute reshape before the output projection; the decoder
  predicts `pixel_codebook_size`-way logits over MaskGIT-VQGAN codes for each patch, whose
  softmax mixes the MaskGIT codebook into a latent grid that the MaskGIT-VQGAN CNN decodes.
* non-legacy (`is_legacy=False`: BL-64 / BL-128 / SL-256 vq8k and the VAE c16 models): the
  decoder predicts RGB patches directly, followed by a 3x3 convolution.
* `quantize_mode="vae"`: continuous tokens (a diagonal Gaussian with `token_size` channels);
  there are no codes.
"""

from __future__ import annotations

from ...modeling_utils import ModalTokenizerConfig

# The original's named ViT sizes: width, layers, heads.
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "small": (512, 8, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}

# The MaskGIT-VQGAN decoder every legacy TiTok / One-D-Piece checkpoint carries.
MASKGIT_VQGAN_DECODER = {
    "pixel_codebook_size": 1024,
    "pixel_embedding_dim": 256,
    "pixel_decoder_channels": 128,
    "pixel_decoder_channel_mult": (1, 1, 2, 2, 4),
    "pixel_decoder_num_res_blocks": 2,
    "pixel_decoder_norm_groups": 32,
}


def vit_size_kwargs(encoder_size: str, decoder_size: str) -> dict:
    """Config fields for the original's named encoder / decoder sizes ("small", "base", "large")."""
    kwargs = {}
    for prefix, name in (("encoder", encoder_size), ("decoder", decoder_size)):
        if name not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {name!r}; expected one of {sorted(VIT_SIZES)}")
        width, layers, heads = VIT_SIZES[name]
        kwargs.update({f"{prefix}_hidden_size": width, f"{prefix}_num_layers": layers, f"{prefix}_num_heads": heads})
    return kwargs


class TiTokConfig(ModalTokenizerConfig):
    """Defaults are TiTok-L-32 (`titok-l32`).

    Attributes:
        image_size: square input side in pixels.
        encoder_patch_size / decoder_patch_size: ViT patch sides; the decoder's patch grid is
            what the head turns back into pixels.
        encoder_* / decoder_*: ViT width, depth and heads (MLP width = `mlp_ratio` x width).
        num_latent_tokens: K, the 1D tokens per image (codes are `[B, 1, K]`).
        token_size: channels per token fed to the quantizer (VQ code vectors / VAE latents).
        quantize_mode: "vq" (discrete codes) or "vae" (continuous latents, no codes).
        codebook_size / use_l2_norm / commitment_cost: the VQ codebook; with `use_l2_norm` both
            the tokens and the codebook are l2-normalised before the nearest-neighbour search.
        is_legacy: the L-32/B-64/S-128 layout (see the module docstring).
        pixel_*: the MaskGIT-VQGAN code vocabulary, embedding width and CNN decoder of legacy
            models (`pixel_decoder_channel_mult` is ordered from full resolution down, as in the
            original; its length - 1 upsamplings must give `decoder_patch_size`).
        quantizer_weight / kl_weight: loss weights in `forward` (VQ codebook + commitment terms,
            VAE KL term).
    """

    model_type = "titok"

    image_size: int = 256
    encoder_patch_size: int = 16
    decoder_patch_size: int = 16
    encoder_hidden_size: int = 1024
    encoder_num_layers: int = 24
    encoder_num_heads: int = 16
    decoder_hidden_size: int = 1024
    decoder_num_layers: int = 24
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-5
    num_latent_tokens: int = 32
    token_size: int = 12
    quantize_mode: str = "vq"
    codebook_size: int = 4096
    use_l2_norm: bool = True
    commitment_cost: float = 0.25
    is_legacy: bool = True
    pixel_codebook_size: int = 1024
    pixel_embedding_dim: int = 256
    pixel_decoder_channels: int = 128
    pixel_decoder_channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4)
    pixel_decoder_num_res_blocks: int = 2
    pixel_decoder_norm_groups: int = 32
    quantizer_weight: float = 1.0
    kl_weight: float = 1e-6

    def __post_init__(self, **kwargs):
        self.pixel_decoder_channel_mult = [int(m) for m in self.pixel_decoder_channel_mult]
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        if self.quantize_mode not in ("vq", "vae"):
            raise ValueError(f"quantize_mode must be 'vq' or 'vae', got {self.quantize_mode!r}")
        for prefix in ("encoder", "decoder"):
            patch = getattr(self, f"{prefix}_patch_size")
            if self.image_size % patch:
                raise ValueError(f"image_size {self.image_size} must be a multiple of {prefix}_patch_size {patch}")
            width, heads = getattr(self, f"{prefix}_hidden_size"), getattr(self, f"{prefix}_num_heads")
            if width % heads:
                raise ValueError(f"{prefix}_hidden_size {width} must be divisible by {prefix}_num_heads {heads}")
        if self.num_latent_tokens < 1:
            raise ValueError(f"num_latent_tokens must be >= 1, got {self.num_latent_tokens}")
        if self.quantize_mode == "vae" and self.is_legacy:
            raise ValueError("VAE variants use the non-legacy layout (is_legacy=False), as in the original")
        if self.is_legacy:
            upsampling = 2 ** (len(self.pixel_decoder_channel_mult) - 1)
            if upsampling != self.decoder_patch_size:
                raise ValueError(
                    f"the pixel decoder upsamples by 2**(len(pixel_decoder_channel_mult) - 1) = {upsampling}, "
                    f"which must equal decoder_patch_size {self.decoder_patch_size}"
                )
            for mult in self.pixel_decoder_channel_mult:
                if (self.pixel_decoder_channels * mult) % self.pixel_decoder_norm_groups:
                    raise ValueError(
                        f"pixel decoder width {self.pixel_decoder_channels * mult} is not divisible by "
                        f"pixel_decoder_norm_groups {self.pixel_decoder_norm_groups}"
                    )

    @property
    def is_continuous(self) -> bool:
        return self.quantize_mode == "vae"

    @property
    def codebook_sizes(self) -> list[int]:
        return [] if self.is_continuous else [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return self.num_latent_tokens
