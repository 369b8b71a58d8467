"""TiTok (bytedance/1d-tokenizer): an image becomes K one-dimensional tokens.

Encoder: a ViT reads the patch grid together with K learned latent tokens; the latent tokens'
outputs, projected to `token_size` channels, are quantized (VQ) or are a Gaussian's parameters
(VAE). Decoder: a ViT reads one mask token per decoder patch together with the K embedded
tokens; the patch outputs become pixels, through MaskGIT-VQGAN codes for legacy checkpoints
(see `TiTokConfig`) or directly for the others.

Numerics follow the original exactly where they matter: the legacy encoder's no-permute
reshape, the fp32 nearest-neighbour search (`EmbeddingVectorQuantizer`), the softmax-weighted
MaskGIT code embedding and the MaskGIT-VQGAN decoder's quirks (`modalzoo.layers.maskgit_vqgan`).
Attention runs through `F.scaled_dot_product_attention` (`modalzoo.layers.vit`).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ...layers.maskgit_vqgan import MaskGitVQGANDecoder
from ...layers.vit import QKVProjection, Transformer
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers.embedding_vector_quantizer import Codebook, EmbeddingVectorQuantizer
from .configuration_titok import TiTokConfig


def check_pixel_values(pixel_values: torch.Tensor, image_size: int) -> None:
    if not torch.is_tensor(pixel_values) or not pixel_values.is_floating_point():
        raise ValueError("pixel_values must be a floating-point tensor [batch, 3, height, width] in [0, 1]")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must be [batch, 3, height, width], got {tuple(pixel_values.shape)}")
    if tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"pixel_values must be {image_size}x{image_size} for this model, got "
            f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]} (use the model's image processor)"
        )


class ViTConv2d(nn.Conv2d):
    """A convolution of the ViT parts, initialised as the original initialises them (and their
    linear layers): truncated normal with std 0.02, zero bias."""

    def reset_parameters(self) -> None:
        init.trunc_normal_(self.weight, mean=0.0, std=0.02)
        if self.bias is not None:
            init.zeros_(self.bias)


class TiTokEncoder(nn.Module):
    """`[B, 3, S, S]` pixels -> `[B, K, out_channels]` token features."""

    def __init__(self, config: TiTokConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.width = width
        self.num_latent_tokens = config.num_latent_tokens
        self.is_legacy = config.is_legacy
        num_patches = (config.image_size // config.encoder_patch_size) ** 2
        out_channels = config.token_size * (2 if config.quantize_mode == "vae" else 1)

        self.patch_embed = ViTConv2d(3, width, config.encoder_patch_size, stride=config.encoder_patch_size)
        self.class_embedding = nn.Parameter(torch.empty(1, width))
        self.position_embedding = nn.Parameter(torch.empty(num_patches + 1, width))
        self.latent_tokens = nn.Parameter(torch.empty(config.num_latent_tokens, width))
        self.latent_position_embedding = nn.Parameter(torch.empty(config.num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.transformer = Transformer(
            width,
            config.encoder_num_layers,
            config.encoder_num_heads,
            mlp_ratio=config.mlp_ratio,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.ln_post = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.proj_out = nn.Linear(width, out_channels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch = pixel_values.shape[0]
        pixel_values = pixel_values.to(self.patch_embed.weight.dtype)
        patches = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        dtype = patches.dtype
        class_token = self.class_embedding.to(dtype).expand(batch, -1, -1)
        image_tokens = torch.cat([class_token, patches], dim=1) + self.position_embedding.to(dtype)
        latent_tokens = (self.latent_tokens + self.latent_position_embedding).to(dtype).expand(batch, -1, -1)
        hidden_states = self.transformer(self.ln_pre(torch.cat([image_tokens, latent_tokens], dim=1)))
        latents = self.ln_post(hidden_states[:, image_tokens.shape[1] :])
        if self.is_legacy:
            # The released legacy checkpoints were trained with `[B, K, W]` memory read as
            # `[B, W, K]` (a reshape where a permute was meant) before the 1x1 projection;
            # reproducing it mixes channels across tokens exactly as they expect.
            latents = latents.reshape(batch, self.width, self.num_latent_tokens).transpose(1, 2)
        return self.proj_out(latents)


class ProxyCodeHead(nn.Module):
    """Legacy head: per decoder patch, logits over the MaskGIT-VQGAN code vocabulary."""

    def __init__(self, width: int, vocab_size: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, vocab_size)

    def forward(self, hidden_states: torch.Tensor, grid_size: int) -> torch.Tensor:
        """`[B, G*G, W]` -> `[B, G*G, vocab]` logits."""
        return self.fc2(torch.tanh(self.fc1(hidden_states)))


class PixelHead(nn.Module):
    """Non-legacy head: each decoder patch predicts its RGB pixels, then a 3x3 convolution."""

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(width, patch_size * patch_size * 3)
        self.conv_out = ViTConv2d(3, 3, 3, padding=1)

    def forward(self, hidden_states: torch.Tensor, grid_size: int) -> torch.Tensor:
        """`[B, G*G, W]` -> `[B, 3, G*p, G*p]`."""
        batch, patch = hidden_states.shape[0], self.patch_size
        # channel index of a patch vector is (row, column, rgb), as the original's rearrange
        pixels = self.proj(hidden_states).view(batch, grid_size, grid_size, patch, patch, 3)
        pixels = pixels.permute(0, 5, 1, 3, 2, 4).reshape(batch, 3, grid_size * patch, grid_size * patch)
        return self.conv_out(pixels)


class TiTokDecoder(nn.Module):
    """`[B, n, token_size]` tokens (any 1 <= n <= K: the first n) -> head output."""

    def __init__(self, config: TiTokConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.width = width
        self.grid_size = config.image_size // config.decoder_patch_size
        self.num_latent_tokens = config.num_latent_tokens

        self.embed = nn.Linear(config.token_size, width)
        self.class_embedding = nn.Parameter(torch.empty(1, width))
        self.position_embedding = nn.Parameter(torch.empty(self.grid_size**2 + 1, width))
        self.mask_token = nn.Parameter(torch.empty(1, 1, width))
        self.latent_position_embedding = nn.Parameter(torch.empty(config.num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.transformer = Transformer(
            width,
            config.decoder_num_layers,
            config.decoder_num_heads,
            mlp_ratio=config.mlp_ratio,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.ln_post = nn.LayerNorm(width, eps=config.layer_norm_eps)
        if config.is_legacy:
            self.head = ProxyCodeHead(width, config.pixel_codebook_size)
        else:
            self.head = PixelHead(width, config.decoder_patch_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape
        latents = self.embed(tokens)
        dtype = latents.dtype
        num_patches = self.grid_size**2
        queries = torch.cat(
            [self.class_embedding.to(dtype).expand(batch, 1, -1), self.mask_token.to(dtype).expand(batch, num_patches, -1)],
            dim=1,
        ) + self.position_embedding.to(dtype)
        latents = latents + self.latent_position_embedding[:length].to(dtype)
        hidden_states = self.transformer(self.ln_pre(torch.cat([queries, latents], dim=1)))
        patches = self.ln_post(hidden_states[:, 1 : 1 + num_patches])
        return self.head(patches, self.grid_size)


class TiTokTokenizer(ModalTokenizer):
    """TiTok on the modalzoo contract.

    * `encode(pixel_values)` -> codes `[B, 1, K]` (VQ), or `latents` `[B, K, token_size]` and no
      codes (VAE: the Gaussian's mean, or a sample with `sample=True`).
    * `decode(codes)` / `decode(latents=...)` -> pixels `[B, 3, S, S]`, roughly in [0, 1] and not
      clamped (the processor's `postprocess` clamps).
    * `forward(pixel_values)` -> reconstruction, quantizer (or KL) losses for training.

    TiTok always uses all K tokens; asking for fewer is an error (One-D-Piece, a subclass with
    the same weights layout, decodes any prefix).
    """

    config_class = TiTokConfig
    modality = "image"
    main_input_name = "pixel_values"
    input_modalities = "image"
    # One-D-Piece sets this: decoding any prefix of the K tokens.
    supports_variable_length = False

    def __init__(self, config: TiTokConfig):
        super().__init__(config)
        self.encoder = TiTokEncoder(config)
        if config.quantize_mode == "vq":
            self.quantizer = EmbeddingVectorQuantizer(
                dim=config.token_size,
                codebook_size=config.codebook_size,
                use_l2_norm=config.use_l2_norm,
                commitment_cost=config.commitment_cost,
            )
        self.decoder = TiTokDecoder(config)
        if config.is_legacy:
            # The MaskGIT-VQGAN codebook, mixed by the decoder's softmax over its logits.
            self.pixel_code_embedding = Codebook(config.pixel_codebook_size, config.pixel_embedding_dim)
            self.pixel_decoder = MaskGitVQGANDecoder(
                z_channels=config.pixel_embedding_dim,
                out_channels=3,
                hidden_channels=config.pixel_decoder_channels,
                channel_mult=config.pixel_decoder_channel_mult,
                num_res_blocks=config.pixel_decoder_num_res_blocks,
                norm_groups=config.pixel_decoder_norm_groups,
            )
        self.post_init()

    # ----- initialisation (the original's) --------------------------------------------------------
    def _init_family_weights(self, module: nn.Module) -> None:
        # transformers initialises custom-code modules only where they hold parameters
        # themselves, so each rule targets the parameters' owner. Codebooks (U(-1/N, 1/N)), the
        # packed qkv projection (Xavier), the ViT convolutions (`ViTConv2d`) and the MaskGIT-VQGAN
        # convolutions (PyTorch default) initialise themselves in `reset_parameters`.
        if isinstance(module, nn.Linear) and not isinstance(module, QKVProjection):
            init.trunc_normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (TiTokEncoder, TiTokDecoder)):
            for parameter in module.parameters(recurse=False):
                init.normal_(parameter, mean=0.0, std=module.width**-0.5)

    # ----- helpers -------------------------------------------------------------------------------
    def _check_num_tokens(self, num_tokens: int | None, what: str = "num_tokens") -> int:
        total = self.config.num_latent_tokens
        if num_tokens is None:
            return total
        try:
            if isinstance(num_tokens, bool):
                raise TypeError
            num_tokens = operator.index(num_tokens)
        except TypeError:
            raise ValueError(f"{what} must be an int, got {num_tokens!r}") from None
        if not self.supports_variable_length:
            if num_tokens != total:
                raise ValueError(
                    f"TiTok always uses its fixed {total} tokens, got {what}={num_tokens}; "
                    "fewer tokens is a One-D-Piece feature (one-d-piece-* variants)"
                )
            return total
        if not 1 <= num_tokens <= total:
            raise ValueError(f"{what} must be between 1 and {total} for this model, got {num_tokens}")
        return num_tokens

    def _split_gaussian(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = features.float().chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _sample_gaussian(self, mean, logvar, generator: torch.Generator | None) -> torch.Tensor:
        # noise drawn as the original's `[B, C, 1, K]` tensor, so a seed gives the same sample
        noise = torch.randn(
            (mean.shape[0], mean.shape[2], mean.shape[1]), generator=generator, dtype=mean.dtype,
            device=generator.device if generator is not None else mean.device,
        ).to(mean.device)
        return mean + torch.exp(0.5 * logvar) * noise.transpose(1, 2)

    def _render(self, tokens: torch.Tensor) -> torch.Tensor:
        """`[B, n, token_size]` tokens -> `[B, 3, S, S]` pixels."""
        tokens = tokens.to(self.decoder.embed.weight.dtype)
        output = self.decoder(tokens)
        if not self.config.is_legacy:
            return output
        batch, grid = output.shape[0], self.decoder.grid_size
        # Soft MaskGIT code embedding, summed in the original's [B, vocab, G, G] layout: the
        # pixel decoder's GroupNorms amplify rounding, so the summation order is kept.
        logits = output.transpose(1, 2).reshape(batch, -1, grid, grid)
        code_vectors = self.pixel_code_embedding.weight
        latents = torch.einsum("nchw,cd->ndhw", logits.softmax(dim=1).to(code_vectors.dtype), code_vectors)
        return self.pixel_decoder(latents.to(self.pixel_decoder.conv_in.weight.dtype))

    # ----- the contract --------------------------------------------------------------------------
    def encode(
        self,
        pixel_values: torch.Tensor,
        *,
        num_tokens: int | None = None,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> EncoderOutput:
        """pixel_values `[B, 3, S, S]` in [0, 1] -> codes `[B, 1, num_tokens]` (VQ) or latents
        `[B, num_tokens, token_size]` with codes None (VAE; `sample=True` draws from the
        posterior with `generator` instead of returning its mean). `num_tokens` keeps the first
        tokens (One-D-Piece only; TiTok accepts only its full K)."""
        check_pixel_values(pixel_values, self.config.image_size)
        num_tokens = self._check_num_tokens(num_tokens)
        features = self.encoder(pixel_values)
        if self.config.is_continuous:
            mean, logvar = self._split_gaussian(features)
            latents = self._sample_gaussian(mean, logvar, generator) if sample else mean
            return EncoderOutput(latents=latents[:, :num_tokens])
        codes = self.quantizer(features).codes
        return EncoderOutput(codes=codes[..., :num_tokens])

    def decode(
        self,
        codes: torch.Tensor | None = None,
        *,
        codes_mask: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """codes `[B, 1, n]` (VQ) or latents `[B, n, token_size]` (VAE) -> values `[B, 3, S, S]`.
        n must be K for TiTok; One-D-Piece decodes any 1 <= n <= K, and with `codes_mask`
        (`[B, n]`, True on a prefix of each row) each image uses its own prefix."""
        if self.config.is_continuous:
            if codes is not None:
                raise ValueError("this TiTok variant is continuous (VAE): decode(latents=...) takes no codes")
            tokens = self._check_latents(latents)
        else:
            if latents is not None:
                raise ValueError("this TiTok variant is discrete (VQ): decode takes codes, not latents")
            if codes is None:
                raise ValueError("decode needs codes [batch, 1, num_tokens]")
            codes = self.check_codes(codes)
            if codes.shape[1] != 1:
                raise ValueError(f"codes must be [batch, 1, num_tokens] (one codebook), got {tuple(codes.shape)}")
            tokens = self.quantizer.lookup(codes)
        self._check_num_tokens(tokens.shape[1], what="the number of tokens to decode")
        if codes_mask is None:
            return DecoderOutput(values=self._render(tokens))
        return DecoderOutput(values=self._render_prefixes(tokens, self._mask_lengths(codes_mask, tokens.shape[:2])))

    def _check_latents(self, latents: torch.Tensor | None) -> torch.Tensor:
        if latents is None:
            raise ValueError("this TiTok variant is continuous (VAE): pass decode(latents=[batch, num_tokens, token_size])")
        if latents.ndim != 3 or latents.shape[-1] != self.config.token_size or not latents.is_floating_point():
            raise ValueError(
                f"latents must be a float tensor [batch, num_tokens, {self.config.token_size}], got "
                f"{tuple(latents.shape)} {latents.dtype}"
            )
        return latents

    def _mask_lengths(self, codes_mask: torch.Tensor, shape) -> torch.Tensor:
        codes_mask = torch.as_tensor(codes_mask, device=self.device).bool()
        if tuple(codes_mask.shape) != tuple(shape):
            raise ValueError(f"codes_mask must be [batch, num_tokens] = {tuple(shape)}, got {tuple(codes_mask.shape)}")
        lengths = codes_mask.sum(-1)
        prefix = torch.arange(shape[1], device=codes_mask.device)[None] < lengths[:, None]
        if not torch.equal(prefix, codes_mask) or bool((lengths == 0).any()):
            raise ValueError("codes_mask must mark a non-empty prefix of each row (the first n tokens)")
        for length in lengths.tolist():
            self._check_num_tokens(length, what="the number of tokens in codes_mask")
        return lengths

    def _render_prefixes(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        values = None
        for length in torch.unique(lengths).tolist():
            rows = (lengths == length).nonzero().flatten()
            rendered = self._render(tokens[rows, :length])
            if values is None:
                values = rendered.new_empty((tokens.shape[0], *rendered.shape[1:]))
            values[rows] = rendered
        return values

    def _training_length(self, generator: torch.Generator | None) -> int:
        """Tokens kept by a training forward pass (all of them for TiTok)."""
        return self.config.num_latent_tokens

    def forward(
        self,
        pixel_values: torch.Tensor,
        *,
        num_tokens: int | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """Encode + decode with straight-through gradients. Losses (already weighted; `loss` is
        their sum): `reconstruction` (MSE), and `commitment` + `codebook` (VQ, times
        `quantizer_weight`) or `kl` (VAE, times `kl_weight`). Perceptual and adversarial terms
        belong to the trainer."""
        check_pixel_values(pixel_values, self.config.image_size)
        if num_tokens is None and self.training:
            num_tokens = self._training_length(generator)
        num_tokens = self._check_num_tokens(num_tokens)
        features = self.encoder(pixel_values)
        losses = {}
        codes = None
        if self.config.is_continuous:
            mean, logvar = self._split_gaussian(features)
            tokens = self._sample_gaussian(mean, logvar, generator) if self.training else mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / mean.shape[0]
            losses["kl"] = self.config.kl_weight * kl
        else:
            quantized = self.quantizer(features)
            tokens, codes = quantized.quantized, quantized.codes
            losses["commitment"] = self.config.quantizer_weight * quantized.commitment_loss
            losses["codebook"] = self.config.quantizer_weight * quantized.codebook_loss
        values = self._render(tokens[:, :num_tokens])
        losses = {"reconstruction": F.mse_loss(values.float(), pixel_values.float()), **losses}
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=codes, values=values)
