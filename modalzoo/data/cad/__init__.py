"""Sketch-and-extrude CAD sequences: the sequence model, the CADFusion text (6-bit) and DeepCAD
vector (8-bit) formats, a validator, and the procedural generator (registered as
`procedural:cad_sequences` and `procedural:cad_sequences_heldout`). The build123d kernel lives
in `modalzoo.data.cad.kernel` (optional `[cad]` extra) and is imported on demand."""

from .cadfusion import read_cadfusion, write_cadfusion
from .deepcad import read_deepcad, write_deepcad
from .generator import cad_sequences, cad_sequences_heldout, random_sequence
from .sequence import CADSequence, Curve, Extrude, Face, Loop, Sketch
from .validation import CADValidationError, is_valid, validate

__all__ = [
    "CADSequence",
    "CADValidationError",
    "Curve",
    "Extrude",
    "Face",
    "Loop",
    "Sketch",
    "cad_sequences",
    "cad_sequences_heldout",
    "is_valid",
    "random_sequence",
    "read_cadfusion",
    "read_deepcad",
    "validate",
    "write_cadfusion",
    "write_deepcad",
]
