"""Sequences -> B-rep solids with build123d (OpenCascade), -> triangle meshes and point samples.

Needs the `[cad]` extra (`pip install modalzoo[cad]`: build123d and the OCP wheels). Each pair's
faces are built from their loops on the sketch plane (holes are the inner loops), extruded over
`[-extent[1], extent[0]]` along the plane normal, and combined with the running body by union,
difference or intersection. A sequence is *buildable* when every step gives a valid, non-empty
solid; `build` raises `CADBuildError` naming the pair otherwise.
"""

from __future__ import annotations

import numpy as np

from .sequence import (
    EXTRUDE_RANGE,
    OFFSET_RANGE,
    SCALE_RANGE,
    SKETCH_RANGE,
    CADSequence,
    Loop,
    circle_center_radius,
    dequantize,
    plane_axes,
)
from .validation import CADValidationError, validate


class CADBuildError(ValueError):
    """The kernel could not make a valid solid from a (grammatically valid) sequence."""


def _bd():
    try:
        import build123d
    except ImportError as error:
        raise ImportError("building CAD solids needs build123d: pip install 'modalzoo[cad]'") from error
    return build123d


def _wire(bd, loop: Loop, to_world, plane_frame, bits: int):
    curves = loop.curves
    if curves[0].kind == "circle":
        center, radius = circle_center_radius(curves[0], bits)
        origin, x_axis, _, normal, scale = plane_frame
        plane = bd.Plane(origin=tuple(to_world(center)), x_dir=tuple(x_axis), z_dir=tuple(normal))
        return bd.Wire([bd.Edge.make_circle(radius * scale, plane)])
    starts = [to_world(dequantize(c.start, bits, SKETCH_RANGE)) for c in curves]
    edges = []
    for index, curve in enumerate(curves):
        start, end = starts[index], starts[(index + 1) % len(curves)]
        if curve.kind == "line":
            edges.append(bd.Edge.make_line(tuple(start), tuple(end)))
        else:
            mid = to_world(dequantize(curve.points[1], bits, SKETCH_RANGE))
            edges.append(bd.Edge.make_three_point_arc(tuple(start), tuple(mid), tuple(end)))
    return bd.Wire(edges)


def build_pair(bd, sketch, extrude, bits: int):
    x_axis, y_axis, normal = plane_axes(extrude)
    origin = dequantize(extrude.origin, bits, EXTRUDE_RANGE)
    scale = float(dequantize(extrude.scale, bits, SCALE_RANGE))
    offset = dequantize(extrude.offset, bits, OFFSET_RANGE)
    e1, e2 = dequantize(extrude.extent, bits, EXTRUDE_RANGE)
    base = origin - e2 * normal  # start of the extrusion

    def to_world(point):
        local = np.asarray(point) * scale + offset
        return base + local[0] * x_axis + local[1] * y_axis

    frame = (base, x_axis, y_axis, normal, scale)
    solids = []
    for face in sketch.faces:
        wires = [_wire(bd, loop, to_world, frame, bits) for loop in face.loops]
        profile = bd.Face(wires[0], wires[1:])
        solids.append(bd.Solid.extrude(profile, tuple(normal * (e1 + e2))))
    body = solids[0]
    for solid in solids[1:]:
        body = body.fuse(solid)
    return body


def build(sequence: CADSequence):
    """The final solid (a build123d shape); raises `CADValidationError` / `CADBuildError`."""
    validate(sequence)
    bd = _bd()
    body = None
    for index, (sketch, extrude) in enumerate(sequence.pairs):
        try:
            part = build_pair(bd, sketch, extrude, sequence.bits)
        except CADValidationError:
            raise
        except Exception as error:  # OCCT raises many types for bad wires and faces
            raise CADBuildError(f"pair {index}: the kernel could not build the sketch or extrusion ({error})") from error
        if not part.is_valid or part.volume <= 1e-9:
            raise CADBuildError(f"pair {index}: the extrusion is not a valid solid (self-intersecting or empty profile)")
        if body is None:
            if extrude.operation != "add":
                raise CADBuildError(f"pair {index}: the first operation must be add, got {extrude.operation}")
            body = part
            continue
        try:
            body = {"add": body.fuse, "cut": body.cut, "intersect": body.intersect}[extrude.operation](part)
        except Exception as error:
            raise CADBuildError(f"pair {index}: the {extrude.operation} boolean failed ({error})") from error
        if isinstance(body, list):  # a boolean that splits the body returns its pieces
            body = bd.Compound(list(body)) if body else None
        if body is None or not body.is_valid or body.volume <= 1e-9:
            raise CADBuildError(f"pair {index}: {extrude.operation} left no valid solid")
    return body


def buildable(sequence: CADSequence) -> bool:
    try:
        build(sequence)
    except (CADValidationError, CADBuildError):
        return False
    return True


def mesh(shape, tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V, 3] float64, triangles [F, 3] int64) of the shape's tessellation."""
    vertices, triangles = shape.tessellate(tolerance)
    return np.array([[v.X, v.Y, v.Z] for v in vertices], dtype=np.float64), np.asarray(triangles, dtype=np.int64)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points uniformly on the mesh surface (area-weighted triangles, uniform barycentrics)."""
    corners = vertices[triangles]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = rng.choice(len(triangles), size=count, p=areas / areas.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = corners[chosen, 0], corners[chosen, 1], corners[chosen, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def export_stl(shape, path) -> None:
    _bd().export_stl(shape, str(path))
