"""CAD-Tokenizer configuration (Wang et al., "Towards Text-based CAD Prototyping via
Modality-Specific Tokenization", arXiv 2509.21150; no code or weights were released, so sizes
other than the 2048-entry codebook are our own choices).

Attributes:
    bits: grid of the parameter values (6 in the CADFusion format); the token vocabulary has
        16 structural tokens plus 2**bits ordinal value bins.
    hidden_size / num_heads / intermediate_size: width of both transformers.
    encoder_layers / decoder_layers: depth of the encoder and of the autoregressive decoder.
    pooling: primitive granularity of the codes: "curve" (the paper's default: one code per
        curve), "loop" (one per loop) or "single" (one per sketch-extrude pair).
    extrude_pooling: "parameter_groups" (one code each for operation+extent, plane origin+axes,
        scale, offset) or "extrusion" (one code per extrusion, as the paper describes; our
        procedural extrusions are uniformly random and carry ~30 bits, more than one 11-bit code).
        Ignored by "single" pooling.
    split_circles: with "curve" pooling, two codes per circle (CIRCLE + its left point, then the
        other three points: the radius), as `primitives.py` explains; a circle's ~18 bits do not
        fit one 11-bit code. False keeps one code per circle, as in the paper.
    offset_embedding: add a learned embedding of each token's offset within its primitive to the
        inputs of both transformers, so a code's value for "the n-th number of this curve" is a
        direct lookup (off by default, as in the paper; cad-tokenizer-small turns it on).
    codebook_size / codebook_dim: the single VQ codebook (l2-normalised, low-dimensional codes).
    dead_code_threshold: in training, codes whose usage EMA falls below it are re-seeded from
        the batch's encoder outputs (keeps the codebook in use); `usage_decay` is that EMA's
        decay: large codebooks need a slower one (0.99) so rarely hit codes are not re-seeded.
    max_sequence_length: the longest token sequence (EOS included) encoded or decoded.
    max_primitives: the most codes per item.
"""

from __future__ import annotations

from ...modeling_utils import ModalTokenizerConfig

POOLINGS = ("curve", "loop", "single")
EXTRUDE_POOLINGS = ("parameter_groups", "extrusion")


class CADTokenizerConfig(ModalTokenizerConfig):
    model_type = "cad_tokenizer"

    bits: int = 6
    hidden_size: int = 256
    num_heads: int = 8
    intermediate_size: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.0
    pooling: str = "curve"
    extrude_pooling: str = "parameter_groups"
    split_circles: bool = False
    offset_embedding: bool = False
    codebook_size: int = 2048
    codebook_dim: int = 16
    dead_code_threshold: float = 0.05
    usage_decay: float = 0.95
    max_sequence_length: int = 256
    max_primitives: int = 96

    def __post_init__(self, **kwargs):
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.extrude_pooling not in EXTRUDE_POOLINGS:
            raise ValueError(f"extrude_pooling must be one of {EXTRUDE_POOLINGS}, got {self.extrude_pooling!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if not 2 <= self.bits <= 10:
            raise ValueError(f"bits must be in [2, 10], got {self.bits}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def token_vocab_size(self) -> int:
        return 16 + 2**self.bits

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return self.max_primitives
