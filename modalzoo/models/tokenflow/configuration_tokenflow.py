"""TokenFlow configuration: the semantic teacher tower, the VQGAN pixel encoder/decoder, the
shared-index multi-scale quantizer and the semantic ViT decoder.

Released layouts (ByteFlow-AI/TokenFlow):

* `tokenflow-clipb-32k-enhanced` (the t2i tokenizer): CLIP ViT-B/16 semantic encoder trained at
  224 px and run at 256 px with its position embedding interpolated (`--infer_interpolate`),
  scales 1..16 (817 tokens), the "enhanced" pixel decoder (256 channels, 4 residual blocks). The
  CLIP tower sees the [-1, 1] pixels directly (no CLIP normalisation), as in the original.
* `tokenflow-siglip-32k` (the understanding tokenizer): SigLIP so400m/14 at 384 px, features of
  the second-to-last layer, 15 scales up to 27 (2227 tokens); the pixel branch runs at 432 px
  (16 x 27, bicubic) and its output is resized back to 384 px.
"""

from __future__ import annotations

from ...modeling_utils import ModalTokenizerConfig

TEACHERS = ("clip", "siglip")

CLIP_B16 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
}

SIGLIP_SO400M = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}


class TokenFlowConfig(ModalTokenizerConfig):
    """Defaults are `tokenflow-clipb-32k-enhanced`.

    Attributes:
        image_size: square input side in pixels.
        teacher: "clip" (transformers `CLIPVisionModel`; features = post-LayerNorm patch tokens
            of the last layer, no input scaling) or "siglip" (`SiglipVisionModel`; input mapped
            [-1, 1] -> [0, 1] -> mean/std 0.5; features = patch tokens of layer
            `semantic_feature_layer`).
        semantic_encoder_config: the teacher tower's transformers config fields. Its
            `image_size` is the resolution it was trained at; other `image_size`s interpolate
            its position embedding (bicubic, the original's DINO-style formula).
        semantic_feature_layer: which hidden state feeds the quantizer (-1 last, -2 SigLIP's).
        semantic_code_dim / pixel_code_dim: channels of the two code halves.
        codebook_size: entries of the shared index (both tables have this many rows).
        scales: multi-scale residual quantization sides, coarse to fine; the last equals the
            feature grid (`image_size / patch_size`).
        pixel_weight / commitment_cost: distance weight of the pixel half; VQ commitment beta.
        pixel_encoder_*: VQGAN encoder width, per-level multipliers (full resolution first),
            residual blocks per level, latent channels (`pixel_z_channels`), GroupNorm groups.
        pixel_decoder_channels / pixel_decoder_num_res_blocks: the decoder (the "enhanced"
            release has 256 / 4, the plain one 128 / 2).
        semantic_decoder_*: the VQKD ViT decoder (patch 1 over the semantic code grid, qkv with
            q/v biases, LayerNorm eps 1e-6): width, depth, heads, and the grid it was trained at
            (its position embedding size).
        semantic_output_dim: output features of the semantic decoder head (CLIP's 512-d
            projection space, or SigLIP's 1152).
        scale_drop_probability: chance a training step drops one random scale (not the first).
        *_weight: training loss weights (see `TokenFlowTokenizer.forward` and the recipe); a
            zero weight skips its term (and the network it needs).
        perceptual_network: LPIPS backbone of the perceptual term ("vgg" as the original).
        semantic_teacher: transformers folder / Hub repo of the frozen teacher the semantic term
            regresses onto (`CLIPVisionModelWithProjection` for "clip", `SiglipVisionModel` for
            "siglip"), loaded with `from_pretrained` at the first training step; None skips
            the term unless `set_loss_networks` provided one.
    """

    model_type = "tokenflow"

    image_size: int = 256
    teacher: str = "clip"
    semantic_encoder_config: dict | None = None
    semantic_feature_layer: int = -1
    semantic_code_dim: int = 32
    pixel_code_dim: int = 8
    codebook_size: int = 32768
    scales: list[int] | tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16)
    pixel_weight: float = 1.0
    commitment_cost: float = 0.25
    pixel_encoder_channels: int = 128
    pixel_channel_mult: list[int] | tuple[int, ...] = (1, 1, 2, 2, 4)
    pixel_encoder_num_res_blocks: int = 2
    pixel_z_channels: int = 256
    pixel_norm_groups: int = 32
    pixel_decoder_channels: int = 256
    pixel_decoder_num_res_blocks: int = 4
    semantic_decoder_hidden_size: int = 768
    semantic_decoder_num_layers: int = 3
    semantic_decoder_num_heads: int = 12
    semantic_decoder_grid_size: int = 14
    semantic_decoder_mlp_ratio: float = 4.0
    semantic_output_dim: int = 512
    scale_drop_probability: float = 0.1
    reconstruction_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual_network: str = "vgg"
    semantic_weight: float = 1.0
    semantic_teacher: str | None = None
    quantizer_weight: float = 1.0

    def __post_init__(self, **kwargs):
        if self.semantic_encoder_config is None:
            self.semantic_encoder_config = dict(CLIP_B16 if self.teacher == "clip" else SIGLIP_SO400M)
        self.semantic_encoder_config = dict(self.semantic_encoder_config)
        self.scales = [int(s) for s in self.scales]
        self.pixel_channel_mult = [int(m) for m in self.pixel_channel_mult]
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.grid_size < 1:
            raise ValueError(f"image_size {self.image_size} is smaller than the teacher's patch {self.semantic_patch_size}")
        if not self.scales or self.scales[-1] != self.grid_size:
            raise ValueError(
                f"the last scale must equal the feature grid image_size / patch_size = {self.grid_size}, got scales {self.scales}"
            )
        if sorted(self.scales) != self.scales or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must increase strictly, got {self.scales}")
        if self.semantic_decoder_hidden_size % self.semantic_decoder_num_heads:
            raise ValueError("semantic_decoder_hidden_size must be divisible by semantic_decoder_num_heads")

    @property
    def semantic_patch_size(self) -> int:
        return int(self.semantic_encoder_config["patch_size"])

    @property
    def semantic_hidden_size(self) -> int:
        return int(self.semantic_encoder_config["hidden_size"])

    @property
    def grid_size(self) -> int:
        """Side of the feature / code map at full scale (the teacher's patch convolution floors:
        SigLIP/14 at 384 px gives 27)."""
        return self.image_size // self.semantic_patch_size

    @property
    def pixel_compression(self) -> int:
        return 2 ** (len(self.pixel_channel_mult) - 1)

    @property
    def pixel_input_size(self) -> int:
        """Side of the image the VQGAN branch sees so that its latent grid matches the semantic
        grid (SigLIP: 16 x 27 = 432 for 384 px input)."""
        return self.pixel_compression * self.grid_size

    @property
    def scale_boundaries(self) -> list[int]:
        boundaries = [0]
        for scale in self.scales:
            boundaries.append(boundaries[-1] + scale * scale)
        return boundaries

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return self.scale_boundaries[-1]
