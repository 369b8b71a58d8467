"""Sketch-and-extrude CAD sequences with quantised parameters (the CADFusion / SkexGen model).

A sequence is a list of (sketch, extrude) pairs. A sketch holds faces, a face holds loops (the
first one is the outer boundary, the rest are holes), a loop holds curves. Curves store only
their start point (a loop closes on itself: a curve ends where the next one starts):

* line:   start point
* arc:    start point and a mid point (the end is the next curve's start)
* circle: four extreme points (left, right, top, bottom); a circle is a loop of its own

Every number is an integer on a `2**bits - 1` grid (6 bits in CADFusion), dequantised with the
SkexGen ranges: sketch coordinates in [-1, 1], extrude distances and plane origin in [-1, 1],
sketch scale in [0, 1.4] and sketch offset in [-0.9, 0.9]. The 3x3 plane axes (x axis, y axis,
normal) are integers in {-1, 0, 1}. A sketch point p lands at
`origin + (p * scale + offset) @ [x_axis, y_axis]` and the extrusion spans `[-extent[1], extent[0]]`
along the normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CURVE_POINTS = {"line": 1, "arc": 2, "circle": 4}
OPERATIONS = ("add", "cut", "intersect")
SKETCH_RANGE = (-1.0, 1.0)
EXTRUDE_RANGE = (-1.0, 1.0)
SCALE_RANGE = (0.0, 1.4)
OFFSET_RANGE = (-0.9, 0.9)
DEFAULT_BITS = 6


def dequantize(values, bits: int, value_range: tuple[float, float]) -> np.ndarray:
    """Grid integers -> floats, as SkexGen's `dequantize_verts`: v * (max - min) / (2**bits - 1) + min."""
    low, high = value_range
    return np.asarray(values, dtype=np.float64) * (high - low) / (2**bits - 1) + low


def quantize(values, bits: int, value_range: tuple[float, float]) -> np.ndarray:
    """Floats -> nearest grid integers (clipped to the grid)."""
    low, high = value_range
    levels = 2**bits - 1
    return np.clip(np.rint((np.asarray(values, dtype=np.float64) - low) / (high - low) * levels), 0, levels).astype(np.int64)


@dataclass(frozen=True)
class Curve:
    kind: str  # "line" | "arc" | "circle"
    points: tuple[tuple[int, int], ...]

    def __post_init__(self):
        if self.kind not in CURVE_POINTS:
            raise ValueError(f"curve kind must be one of {sorted(CURVE_POINTS)}, got {self.kind!r}")
        if len(self.points) != CURVE_POINTS[self.kind]:
            raise ValueError(f"a {self.kind} has {CURVE_POINTS[self.kind]} point(s), got {len(self.points)}")
        object.__setattr__(self, "points", tuple((int(x), int(y)) for x, y in self.points))

    @property
    def start(self) -> tuple[int, int]:
        return self.points[0]

    @property
    def values(self) -> list[int]:
        return [v for point in self.points for v in point]


@dataclass
class Loop:
    curves: list[Curve]


@dataclass
class Face:
    loops: list[Loop]  # loops[0] is the outer boundary


@dataclass
class Sketch:
    faces: list[Face]


@dataclass
class Extrude:
    operation: str  # add | cut | intersect
    extent: tuple[int, int]  # along the normal, against the normal
    origin: tuple[int, int, int]
    axes: tuple[int, ...]  # 9 ints: x axis, y axis, normal
    scale: int
    offset: tuple[int, int]

    def __post_init__(self):
        if self.operation not in OPERATIONS:
            raise ValueError(f"extrude operation must be one of {OPERATIONS}, got {self.operation!r}")
        self.extent = tuple(int(v) for v in self.extent)
        self.origin = tuple(int(v) for v in self.origin)
        self.axes = tuple(int(v) for v in self.axes)
        self.scale = int(self.scale)
        self.offset = tuple(int(v) for v in self.offset)

    @property
    def values(self) -> list[int]:
        """The 17 numbers of the CADFusion string, in its order."""
        return [*self.extent, *self.origin, *self.axes, self.scale, *self.offset]


@dataclass
class CADSequence:
    pairs: list[tuple[Sketch, Extrude]] = field(default_factory=list)
    bits: int = DEFAULT_BITS

    @property
    def curves(self) -> list[tuple[int, Curve]]:
        """(pair index, curve) for every curve, in order."""
        return [
            (index, curve)
            for index, (sketch, _) in enumerate(self.pairs)
            for face in sketch.faces
            for loop in face.loops
            for curve in loop.curves
        ]

    @property
    def extrudes(self) -> list[Extrude]:
        return [extrude for _, extrude in self.pairs]

    def __eq__(self, other) -> bool:
        return isinstance(other, CADSequence) and self.bits == other.bits and self.pairs == other.pairs


# ----- geometry helpers --------------------------------------------------------------------------------
def plane_axes(extrude: Extrude) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = np.asarray(extrude.axes, dtype=np.float64).reshape(3, 3)
    return axes[0], axes[1], axes[2]


def circle_center_radius(curve: Curve, bits: int) -> tuple[np.ndarray, float]:
    """As SkexGen: centre from the mid points of the horizontal and vertical extreme pairs."""
    p1, p2, p3, p4 = (dequantize(p, bits, SKETCH_RANGE) for p in curve.points)
    center = np.array([0.5 * (p1[0] + p2[0]), 0.5 * (p3[1] + p4[1])])
    radius = (np.linalg.norm(p1 - p2) + np.linalg.norm(p3 - p4)) / 4.0
    return center, float(radius)


def circle_points(center: tuple[int, int], radius: int) -> tuple[tuple[int, int], ...]:
    """The four extreme points of a grid circle: left, right, top, bottom."""
    cx, cy = center
    return ((cx - radius, cy), (cx + radius, cy), (cx, cy + radius), (cx, cy - radius))
