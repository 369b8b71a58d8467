"""Codebook layers shared by the families: adapters over vector-quantize-pytorch with one return
shape (`QuantizerOutput`) and a `lookup(codes)` from codes back to vectors."""

from .output import QuantizerOutput
from .residual_quantizer import ResidualVectorQuantizer
from .scalar_quantizer import FiniteScalarQuantizer
from .vector_quantizer import VectorQuantizer

__all__ = ["FiniteScalarQuantizer", "QuantizerOutput", "ResidualVectorQuantizer", "VectorQuantizer"]
