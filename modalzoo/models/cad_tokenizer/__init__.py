"""CAD-Tokenizer (Wang et al., arXiv 2509.21150, ICLR 2026): a primitive-level VQ-VAE for
sketch-and-extrude CAD sequences, with grammar-constrained decoding and LLM binding adapters.
Clean-room from the paper (no code or weights were released)."""

from ...registry import register_family, register_variant
from .binding import CodeTokenBinding
from .configuration_cad_tokenizer import CADTokenizerConfig
from .modeling_cad_tokenizer import CADTokenizerModel
from .processing_cad_tokenizer import CADTokenizerProcessor

register_family("cad_tokenizer", config_class=CADTokenizerConfig, model_class=CADTokenizerModel, processor_class=CADTokenizerProcessor)

register_variant("cad-tokenizer", "cad_tokenizer", "curve pooling, 2048 codes, 4+4 layers of width 256 (our sizes; none published)")
# a larger codebook than the paper's 2048: a point of the procedural sketches is ~12 random bits (model card)
SMALL = {"hidden_size": 96, "num_heads": 4, "intermediate_size": 192, "encoder_layers": 2, "decoder_layers": 2,
         "split_circles": True, "offset_embedding": True, "codebook_size": 16384, "usage_decay": 0.99}
register_variant("cad-tokenizer-small", "cad_tokenizer", "curve pooling, 16384 codes, 2+2 layers of width 96 (CPU-trainable)", **SMALL)
for _pooling in ("loop", "single"):
    register_variant(f"cad-tokenizer-small-{_pooling}", "cad_tokenizer", f"{_pooling} pooling ablation of cad-tokenizer-small", pooling=_pooling, **SMALL)
TINY = {"hidden_size": 32, "num_heads": 4, "intermediate_size": 64, "encoder_layers": 1, "decoder_layers": 1,
        "codebook_size": 256, "codebook_dim": 8}
register_variant("cad-tokenizer-tiny", "cad_tokenizer", "tiny CAD-Tokenizer for tests: width 32, 256 codes", **TINY)

__all__ = ["CADTokenizerConfig", "CADTokenizerModel", "CADTokenizerProcessor", "CodeTokenBinding"]
