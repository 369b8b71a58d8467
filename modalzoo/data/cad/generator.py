"""Procedural sketch-and-extrude sequences: licence-free CAD data with known ground truth.

Each sequence has 1-3 pairs. Sketches are a rectangle, a convex polygon, a rounded rectangle
(lines + arcs) or a circle, with 0-2 circular or rectangular holes. As in SkexGen's data the
sketch is normalised to its frame (its longer side spans the 6-bit grid) and the extrude's
scale and offset place it in the plane. Planes are the three axis planes with a random offset
along the normal; the first operation is `add`, later ones `add`, `cut` (through the first
body, smaller than it, so something always remains) or, rarely, `intersect` (a prism around
the first body); extents are one-sided, symmetric or two-sided. Everything is drawn from the
given generator, so a seed gives the same sequence on every platform.
"""

from __future__ import annotations

import math

import numpy as np

from .. import register_procedural
from .sequence import CADSequence, Curve, Extrude, Face, Loop, Sketch, circle_points

TOP = 63  # the 6-bit grid
ZERO = 32  # the grid index nearest 0.0 (dequantises to +0.016)
MARGIN = 2
# x axis, y axis, normal of the XY, YZ and ZX planes (right-handed)
AXIS_PLANES = ((1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 1, 0, 0, 0, 1, 1, 0, 0), (0, 0, 1, 1, 0, 0, 0, 1, 0))


# ----- outer profiles ------------------------------------------------------------------------------------
def _box(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A rectangle whose longer side spans the grid, the shorter one centred."""
    short = int(rng.integers(16, TOP + 1))
    low = (TOP - short) // 2
    if rng.random() < 0.5:
        return 0, low, TOP, low + short
    return low, 0, low + short, TOP


def _rectangle_loop(x0: int, y0: int, x1: int, y1: int) -> Loop:
    return Loop([Curve("line", (p,)) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))])


def _rounded_loop(x0: int, y0: int, x1: int, y1: int, r: int) -> Loop:
    """Counter-clockwise: each side's line, then the corner arc through the 45-degree point."""
    d = r * math.sqrt(0.5)
    corners = (  # (line start, arc start, corner centre, direction of the arc's mid point)
        ((x0 + r, y0), (x1 - r, y0), (x1 - r, y0 + r), (1, -1)),
        ((x1, y0 + r), (x1, y1 - r), (x1 - r, y1 - r), (1, 1)),
        ((x1 - r, y1), (x0 + r, y1), (x0 + r, y1 - r), (-1, 1)),
        ((x0, y1 - r), (x0, y0 + r), (x0 + r, y0 + r), (-1, -1)),
    )
    curves = []
    for line_start, arc_start, (cx, cy), (sx, sy) in corners:
        curves.append(Curve("line", (line_start,)))
        curves.append(Curve("arc", (arc_start, (int(round(cx + sx * d)), int(round(cy + sy * d))))))
    return Loop(curves)


def _polygon(rng: np.random.Generator) -> list[tuple[int, int]] | None:
    sides = int(rng.integers(3, 7))
    step = 2 * math.pi / sides
    angles = np.arange(sides) * step + rng.uniform(-0.25, 0.25, sides) * step + rng.uniform(0, 2 * math.pi)
    radii = rng.uniform(0.75, 1.0, sides)
    points = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    low, high = points.min(0), points.max(0)
    size = (high - low).max()
    grid = np.rint((points - (low + high) / 2) / size * TOP + TOP / 2).astype(int)
    vertices = [tuple(int(v) for v in p) for p in grid]
    for index in range(sides):  # strictly convex, counter-clockwise, no repeated point
        a, b, c = vertices[index - 1], vertices[index], vertices[(index + 1) % sides]
        if (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) <= 0:
            return None
    return vertices


def _inside_convex(vertices, point, margin: float) -> bool:
    for index in range(len(vertices)):
        (ax, ay), (bx, by) = vertices[index], vertices[(index + 1) % len(vertices)]
        cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
        if cross / math.hypot(bx - ax, by - ay) < margin:
            return False
    return True


def _outer(rng: np.random.Generator):
    """(outer loop, containment test for a hole's bounding box)."""
    kind = rng.choice(["rectangle", "polygon", "rounded", "circle"], p=[0.3, 0.25, 0.25, 0.2])
    if kind == "circle":
        radius = TOP // 2
        center = (radius, radius)
        fits = lambda box: all(math.dist(c, center) <= radius - MARGIN for c in _corners(box))  # noqa: E731
        return Loop([Curve("circle", circle_points(center, radius))]), fits
    if kind == "polygon":
        vertices = None
        while vertices is None:
            vertices = _polygon(rng)
        fits = lambda box: all(_inside_convex(vertices, c, MARGIN) for c in _corners(box))  # noqa: E731
        return Loop([Curve("line", (v,)) for v in vertices]), fits
    x0, y0, x1, y1 = _box(rng)
    inset = MARGIN
    if kind == "rounded":
        radius = int(rng.integers(4, max(5, min(x1 - x0, y1 - y0) // 3 + 1)))
        inset += radius
        loop = _rounded_loop(x0, y0, x1, y1, radius)
    else:
        loop = _rectangle_loop(x0, y0, x1, y1)
    fits = lambda box: box[0] >= x0 + inset and box[1] >= y0 + inset and box[2] <= x1 - inset and box[3] <= y1 - inset  # noqa: E731
    return loop, fits


def _corners(box):
    x0, y0, x1, y1 = box
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _holes(rng: np.random.Generator, fits, count: int) -> list[Loop]:
    holes, boxes = [], []
    for _ in range(40 * count):
        if len(holes) == count:
            break
        cx, cy = (int(v) for v in rng.integers(8, TOP - 7, 2))
        if rng.random() < 0.6:
            r = int(rng.integers(3, 9))
            box, loop = (cx - r, cy - r, cx + r, cy + r), Loop([Curve("circle", circle_points((cx, cy), r))])
        else:
            w, h = (int(v) for v in rng.integers(2, 8, 2))
            box = (cx - w, cy - h, cx + w, cy + h)
            loop = _rectangle_loop(*box)
        apart = all(box[2] + MARGIN < b[0] or b[2] + MARGIN < box[0] or box[3] + MARGIN < b[1] or b[3] + MARGIN < box[1] for b in boxes)
        if fits(box) and apart:
            holes.append(loop)
            boxes.append(box)
    return holes


def random_sketch(rng: np.random.Generator, *, holes: bool = True) -> Sketch:
    outer, fits = _outer(rng)
    count = int(rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2])) if holes else 0
    return Sketch([Face([outer, *_holes(rng, fits, count)])])


def full_frame_sketch(rng: np.random.Generator) -> Sketch:
    """A rectangle or circle filling the frame (intersect prisms)."""
    if rng.random() < 0.5:
        return Sketch([Face([_rectangle_loop(0, 0, TOP, TOP)])])
    return Sketch([Face([Loop([Curve("circle", circle_points((31, 31), 31))])])])


# ----- extrusions --------------------------------------------------------------------------------------
def _extent(rng: np.random.Generator) -> tuple[int, int]:
    e1 = int(rng.integers(36, 57))
    kind = rng.choice(["one_side", "symmetric", "two_sides"])
    return (e1, ZERO) if kind == "one_side" else (e1, e1) if kind == "symmetric" else (e1, int(rng.integers(36, 51)))


def _origin(axes, depth: int) -> tuple[int, int, int]:
    normal = axes[6:]
    return tuple(depth if n else ZERO for n in normal)


def random_extrude(rng: np.random.Generator) -> Extrude:
    axes = AXIS_PLANES[int(rng.integers(0, 3))]
    return Extrude(
        operation="add",
        extent=_extent(rng),
        origin=_origin(axes, int(rng.integers(20, 44))),
        axes=axes,
        scale=int(rng.integers(20, 46)),
        offset=tuple(int(v) for v in rng.integers(18, 46, 2)),
    )


def random_sequence(rng: np.random.Generator) -> CADSequence:
    base_sketch, base = random_sketch(rng), random_extrude(rng)
    pairs = [(base_sketch, base)]
    for _ in range(int(rng.choice([0, 1, 2], p=[0.4, 0.35, 0.25]))):
        operation = rng.choice(["add", "cut", "intersect"], p=[0.45, 0.45, 0.1])
        if operation == "add":
            pairs.append((random_sketch(rng), random_extrude(rng)))
        elif operation == "cut":
            # on the first body's plane, smaller than its frame, through its whole thickness
            scale = int(rng.integers(max(6, base.scale - 16), base.scale - 7))
            extent = int(rng.integers(57, TOP))
            cut = Extrude("cut", (extent, extent), base.origin, base.axes, scale, base.offset)
            pairs.append((random_sketch(rng, holes=False), cut))
        else:
            scale = int(rng.integers(base.scale, min(TOP, base.scale + 12) + 1))
            pairs.append((full_frame_sketch(rng), Extrude("intersect", _extent(rng), base.origin, base.axes, scale, base.offset)))
    return CADSequence(pairs, bits=6)


@register_procedural("cad_sequences")
def cad_sequences(index: int, rng: np.random.Generator) -> CADSequence:
    """Training stream: the trainer's per-index generator."""
    return random_sequence(rng)


HELD_OUT_SEED = 0xCAD7E57


@register_procedural("cad_sequences_heldout")
def cad_sequences_heldout(index: int, rng: np.random.Generator | None = None) -> CADSequence:
    """A stream disjoint from `cad_sequences`' seeds (its own seed, whatever generator is passed)."""
    return random_sequence(np.random.default_rng([HELD_OUT_SEED, index]))
