"""Grammar and degeneracy checks of a CAD sequence, each with a message naming where it failed.

These are the checks CADFusion's parser applies before building (zero-length lines, degenerate
arcs, sketch/extrude count mismatch) plus the ones its grammar implies (closed loops, circles
alone in their loop, values on the grid, orthonormal integer plane axes). What only a CAD
kernel can find (self-intersecting loops, holes outside their face, empty booleans) is left to
`modalzoo.data.cad.kernel`.
"""

from __future__ import annotations

import numpy as np

from .sequence import CADSequence, Curve


class CADValidationError(ValueError):
    """A sequence that does not describe valid sketch-and-extrude geometry; `where` locates it."""

    def __init__(self, where: str, problem: str):
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


def _cross(origin, a, b) -> int:
    return (a[0] - origin[0]) * (b[1] - origin[1]) - (a[1] - origin[1]) * (b[0] - origin[0])


def check_curve(curve: Curve, next_start: tuple[int, int], where: str) -> None:
    if curve.kind == "line" and curve.start == next_start:
        raise CADValidationError(where, f"zero-length line (it starts and ends at {curve.start})")
    if curve.kind == "arc":
        start, mid = curve.points
        if start == mid or mid == next_start or start == next_start:
            raise CADValidationError(where, f"degenerate arc: start {start}, mid {mid} and end {next_start} are not three distinct points")
        if _cross(start, mid, next_start) == 0:
            raise CADValidationError(where, f"degenerate arc: start {start}, mid {mid} and end {next_start} are collinear")
    if curve.kind == "circle":
        (lx, ly), (rx, ry), (tx, ty), (bx, by) = curve.points
        if rx <= lx or ty <= by:
            raise CADValidationError(where, f"degenerate circle: extreme points {curve.points} enclose no area")


def validate(sequence: CADSequence) -> None:
    """Raises `CADValidationError` at the first problem; returns None for a valid sequence."""
    if not sequence.pairs:
        raise CADValidationError("", "empty sequence: expected at least one sketch-extrude pair")
    top = 2**sequence.bits - 1
    for pair_index, (sketch, extrude) in enumerate(sequence.pairs):
        where_pair = f"pair {pair_index}"
        if not sketch.faces:
            raise CADValidationError(where_pair, "sketch has no face")
        for face_index, face in enumerate(sketch.faces):
            where_face = f"{where_pair}, face {face_index}"
            if not face.loops:
                raise CADValidationError(where_face, "face has no loop")
            for loop_index, loop in enumerate(face.loops):
                where_loop = f"{where_face}, loop {loop_index}"
                curves = loop.curves
                if not curves:
                    raise CADValidationError(where_loop, "loop has no curve")
                kinds = [c.kind for c in curves]
                if "circle" in kinds and len(curves) > 1:
                    raise CADValidationError(where_loop, f"open loop: a circle must be alone in its loop, got {kinds}")
                if "circle" not in kinds and len(curves) < 2:
                    raise CADValidationError(where_loop, f"open loop: a single {kinds[0]} cannot close a loop")
                for curve_index, curve in enumerate(curves):
                    where = f"{where_loop}, curve {curve_index}"
                    bad = [v for v in curve.values if not 0 <= v <= top]
                    if bad:
                        raise CADValidationError(where, f"coordinate {bad[0]} is off the {sequence.bits}-bit grid [0, {top}]")
                    check_curve(curve, curves[(curve_index + 1) % len(curves)].start, where)
        where_ext = f"{where_pair}, extrude"
        bad = [v for v in (*extrude.extent, *extrude.origin, extrude.scale, *extrude.offset) if not 0 <= v <= top]
        if bad:
            raise CADValidationError(where_ext, f"value {bad[0]} is off the {sequence.bits}-bit grid [0, {top}]")
        axes = np.asarray(extrude.axes).reshape(3, 3)
        if not np.isin(axes, (-1, 0, 1)).all() or not np.array_equal(axes @ axes.T, np.eye(3)):
            raise CADValidationError(where_ext, f"plane axes {extrude.axes} are not an orthonormal integer frame")
        if not np.array_equal(np.cross(axes[0], axes[1]), axes[2]):
            raise CADValidationError(where_ext, "plane normal is not x_axis x y_axis (left-handed frame)")
        if extrude.extent[0] + extrude.extent[1] == top:  # dequantised e1 == -e2: no thickness
            raise CADValidationError(where_ext, f"zero-thickness extrusion (extent {extrude.extent})")
        if extrude.scale == 0:
            raise CADValidationError(where_ext, "sketch scale is zero")


def is_valid(sequence: CADSequence) -> bool:
    try:
        validate(sequence)
    except CADValidationError:
        return False
    return True
