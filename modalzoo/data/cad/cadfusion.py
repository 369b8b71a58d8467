"""The CADFusion text format (6-bit integers), as read by CADFusion's `rendering_utils/parser.py`:

    seq     := (sketch "<sketch_end>" extrude "<extrude_end>")+
    sketch  := (face "<face_end>")+
    face    := (loop "<loop_end>")+
    loop    := (curve "<curve_end>")+
    curve   := "line,x,y" | "arc,x,y,mx,my" | "circle,x1,y1,x2,y2,x3,y3,x4,y4"
    extrude := ("add" | "cut" | "intersect") "," 17 integers
               (extent 2, origin 3, axes 9, scale 1, offset 2)

Tokens are separated by single spaces when written; reading accepts any whitespace.
"""

from __future__ import annotations

import re

from .sequence import CURVE_POINTS, DEFAULT_BITS, OPERATIONS, CADSequence, Curve, Extrude, Face, Loop, Sketch
from .validation import CADValidationError, validate

_PAIR = re.compile(r"(.*?)<sketch_end>(.*?)<extrude_end>", re.S)


def _ints(fields: list[str], where: str) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise CADValidationError(where, f"expected integers, got {','.join(fields)!r}") from None


def _parse_curve(text: str, where: str) -> Curve:
    fields = [f.strip() for f in text.split(",")]
    kind = fields[0]
    if kind not in CURVE_POINTS:
        raise CADValidationError(where, f"unknown curve {kind!r}; expected line, arc or circle")
    expected = 2 * CURVE_POINTS[kind]
    values = _ints(fields[1:], where)
    if len(values) != expected:
        raise CADValidationError(where, f"a {kind} takes {expected} integers, got {len(values)}")
    return Curve(kind, tuple(zip(values[0::2], values[1::2])))


def _split(text: str, marker: str) -> list[str]:
    return [part.strip() for part in text.split(marker) if part.strip()]


def _parse_extrude(text: str, where: str) -> Extrude:
    fields = [f.strip() for f in text.split(",")]
    if fields[0] not in OPERATIONS:
        raise CADValidationError(where, f"unknown operation {fields[0]!r}; expected one of {OPERATIONS}")
    values = _ints(fields[1:], where)
    if len(values) != 17:
        raise CADValidationError(where, f"an extrude takes 17 integers after the operation, got {len(values)}")
    return Extrude(fields[0], tuple(values[0:2]), tuple(values[2:5]), tuple(values[5:14]), values[14], tuple(values[15:17]))


def read_cadfusion(text: str, *, bits: int = DEFAULT_BITS, check: bool = True) -> CADSequence:
    """Parses a CADFusion string; `check` also runs `validate` (degenerate curves, open loops)."""
    text = text.strip()
    sketch_count, extrude_count = text.count("<sketch_end>"), text.count("<extrude_end>")
    if sketch_count != extrude_count:
        raise CADValidationError("", f"count mismatch: {sketch_count} <sketch_end> but {extrude_count} <extrude_end>")
    matches = list(_PAIR.finditer(text))
    if not matches or text[matches[-1].end():].strip():
        raise CADValidationError("", "expected (sketch <sketch_end> extrude <extrude_end>)+ with nothing after the last <extrude_end>")
    pairs = []
    for pair_index, match in enumerate(matches):
        where_pair = f"pair {pair_index}"
        faces = []
        for face_index, face_text in enumerate(_split(match.group(1), "<face_end>")):
            loops = []
            for loop_index, loop_text in enumerate(_split(face_text, "<loop_end>")):
                where = f"{where_pair}, face {face_index}, loop {loop_index}"
                if "<curve_end>" not in loop_text and loop_text:
                    raise CADValidationError(where, "curve without <curve_end>")
                curves = [_parse_curve(c, f"{where}, curve {i}") for i, c in enumerate(_split(loop_text, "<curve_end>"))]
                loops.append(Loop(curves))
            faces.append(Face(loops))
        if not faces:
            raise CADValidationError(where_pair, "sketch has no face")
        pairs.append((Sketch(faces), _parse_extrude(match.group(2).strip(), f"{where_pair}, extrude")))
    sequence = CADSequence(pairs, bits=bits)
    if check:
        validate(sequence)
    return sequence


def write_cadfusion(sequence: CADSequence) -> str:
    parts = []
    for sketch, extrude in sequence.pairs:
        for face in sketch.faces:
            for loop in face.loops:
                for curve in loop.curves:
                    parts.append(",".join([curve.kind, *map(str, curve.values)]) + " <curve_end>")
                parts.append("<loop_end>")
            parts.append("<face_end>")
        parts.append("<sketch_end>")
        parts.append(",".join([extrude.operation, *map(str, extrude.values)]) + " <extrude_end>")
    return " ".join(parts)
