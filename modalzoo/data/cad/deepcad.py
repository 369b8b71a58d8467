"""The DeepCAD vector format (`cadlib/macro.py` of ChrisWu1997/DeepCAD): one row per command,
`[command, 16 arguments]` with 8-bit arguments (ARGS_DIM = 256) and -1 for unused ones.

Commands: Line, Arc, Circle, EOS, SOL, Ext. Arguments: x, y, alpha, f, r (sketch) and theta,
phi, gamma, p_x, p_y, p_z, s, e1, e2, b, u (extrusion). A loop starts with SOL; lines and arcs
store their end point (the loop closes on the first curve's start), arcs their sweep angle
alpha and a counter-clockwise flag f, circles their centre and radius r. Ext holds the sketch
plane as polar angles (theta, phi of the normal, gamma of the x axis), its position p, the
sketch scale s, the extents, the boolean b (NewBody / Join / Cut / Intersect) and the extent
type u (OneSide / Symmetric / TwoSides). Quantisation is DeepCAD's `numericalize`:
`round((v + 1) / 2 * 256)` clipped to [0, 255] for values in [-1, 1], `round(a / pi + 1) / 2 * 256)`
for angles, `round(v / 2 * 256)` for sizes.

DeepCAD has no sketch offset: the writer folds it into the plane position (p = origin + offset
in the plane) and the reader puts the plane origin's in-plane part at the 6-bit grid's zero
(index 2**(bits-1)). DeepCAD's Ext also carries one profile: a sketch of several faces is
written as one Ext per face (as DeepCAD decomposes them) and reads back as one pair per face.
6-bit sequences whose plane origin lies on the normal through the world origin's grid zero (all
procedural ones) round trip exactly: string -> vector -> string.
"""

from __future__ import annotations

import math

import numpy as np

from .sequence import (
    EXTRUDE_RANGE,
    SCALE_RANGE,
    SKETCH_RANGE,
    CADSequence,
    Curve,
    Extrude,
    Face,
    Loop,
    Sketch,
    circle_center_radius,
    circle_points,
    dequantize,
    plane_axes,
    quantize,
)
from .validation import CADValidationError, validate

COMMANDS = ("Line", "Arc", "Circle", "EOS", "SOL", "Ext")
LINE, ARC, CIRCLE, EOS, SOL, EXT = range(6)
BOOLEANS = ("NewBody", "Join", "Cut", "Intersect")
EXTENT_TYPES = ("OneSide", "Symmetric", "TwoSides")
ARGS_DIM = 256
N_ARGS = 16
PAD = -1


def _num(values) -> np.ndarray:
    """[-1, 1] -> 8-bit, DeepCAD's numericalize."""
    return np.clip(np.rint((np.asarray(values, dtype=np.float64) + 1.0) / 2 * ARGS_DIM), 0, ARGS_DIM - 1).astype(np.int64)


def _denum(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) / ARGS_DIM * 2 - 1.0


def _row(command: int, **args) -> list[int]:
    names = ("x", "y", "alpha", "f", "r", "theta", "phi", "gamma", "px", "py", "pz", "s", "e1", "e2", "b", "u")
    row = [command] + [PAD] * N_ARGS
    for name, value in args.items():
        row[1 + names.index(name)] = int(value)
    return row


# ----- plane <-> polar angles (DeepCAD's polar_parameterization) ----------------------------------------
def _reference_x(theta: float, phi: float) -> np.ndarray:
    return np.array([math.cos(theta) * math.cos(phi), math.cos(theta) * math.sin(phi), -math.sin(theta)])


def axes_to_angles(axes) -> tuple[float, float, float]:
    x_axis, _, normal = (np.asarray(a, dtype=np.float64) for a in np.asarray(axes).reshape(3, 3))
    theta = math.acos(max(-1.0, min(1.0, normal[2])))
    phi = math.atan2(normal[1], normal[0])
    ref_x = _reference_x(theta, phi)
    ref_y = np.cross(normal, ref_x)
    gamma = math.atan2(float(x_axis @ ref_y), float(x_axis @ ref_x))
    return theta, phi, gamma


def angles_to_axes(theta: float, phi: float, gamma: float) -> tuple[int, ...]:
    """Polar angles -> the nearest integer frame (x axis, y axis, normal)."""
    normal = np.array([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])
    ref_x = _reference_x(theta, phi)
    x_axis = math.cos(gamma) * ref_x + math.sin(gamma) * np.cross(normal, ref_x)
    x_axis, normal = np.rint(x_axis).astype(int), np.rint(normal).astype(int)
    return (*x_axis, *np.cross(normal, x_axis), *normal)


# ----- arcs: (start, mid, end) <-> (end, sweep, direction) -------------------------------------------------
def _arc_center(start, mid, end) -> np.ndarray:
    (ax, ay), (bx, by), (cx, cy) = start, mid, end
    d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    ux = ((ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)) / d
    uy = ((ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)) / d
    return np.array([ux, uy])


def arc_sweep(start, mid, end) -> tuple[float, int]:
    """(sweep angle in (0, 2 pi), 1 if counter-clockwise) of the arc through three points."""
    start, mid, end = (np.asarray(p, dtype=np.float64) for p in (start, mid, end))
    center = _arc_center(start, mid, end)
    ccw = int(np.cross(mid - start, end - mid) > 0)
    angle = lambda p: math.atan2(p[1] - center[1], p[0] - center[0])  # noqa: E731
    sweep = (angle(end) - angle(start)) % (2 * math.pi)
    return (sweep if ccw else 2 * math.pi - sweep), ccw


def arc_mid(start, end, sweep: float, ccw: int) -> np.ndarray:
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    chord = end - start
    half = np.linalg.norm(chord) / 2
    radius = half / max(1e-12, math.sin(sweep / 2))
    normal = np.array([-chord[1], chord[0]]) / max(1e-12, 2 * half)  # left of the chord
    # the centre lies left of the chord for a counter-clockwise arc shorter than half a turn
    side = (1 if ccw else -1) * (1 if sweep < math.pi else -1)
    center = (start + end) / 2 + side * normal * radius * math.cos(sweep / 2)
    start_angle = math.atan2(start[1] - center[1], start[0] - center[0])
    mid_angle = start_angle + (sweep / 2 if ccw else -sweep / 2)
    return center + radius * np.array([math.cos(mid_angle), math.sin(mid_angle)])


# ----- writer ------------------------------------------------------------------------------------------------------
def write_deepcad(sequence: CADSequence) -> np.ndarray:
    """`[N, 17]` int64 rows, ending with EOS."""
    validate(sequence)
    bits = sequence.bits
    rows = []
    for pair_index, (sketch, extrude) in enumerate(sequence.pairs):
        x_axis, y_axis, normal = plane_axes(extrude)
        origin = dequantize(extrude.origin, bits, EXTRUDE_RANGE)
        offset = dequantize(extrude.offset, bits, (-0.9, 0.9))
        position = origin + offset[0] * x_axis + offset[1] * y_axis
        theta, phi, gamma = axes_to_angles(extrude.axes)
        angles = np.clip(np.rint((np.array([theta, phi, gamma]) / math.pi + 1.0) / 2 * ARGS_DIM), 0, ARGS_DIM - 1)
        extent = dequantize(extrude.extent, bits, EXTRUDE_RANGE)
        scale = float(dequantize(extrude.scale, bits, SCALE_RANGE))
        step = 2.0 / (2**bits - 1)
        if extrude.extent[0] == extrude.extent[1]:
            extent_type = 1
        elif abs(extent[1]) <= step / 2 + 1e-9:
            extent_type = 0
        else:
            extent_type = 2
        for face_index, face in enumerate(sketch.faces):
            for loop in face.loops:
                rows.append(_row(SOL))
                points = [dequantize(c.start, bits, SKETCH_RANGE) for c in loop.curves]
                for index, curve in enumerate(loop.curves):
                    end = points[(index + 1) % len(points)]
                    if curve.kind == "line":
                        rows.append(_row(LINE, **dict(zip("xy", _num(end)))))
                    elif curve.kind == "arc":
                        sweep, ccw = arc_sweep(points[index], dequantize(curve.points[1], bits, SKETCH_RANGE), end)
                        alpha = min(ARGS_DIM - 1, round(sweep / (2 * math.pi) * ARGS_DIM))
                        rows.append(_row(ARC, **dict(zip("xy", _num(end))), alpha=alpha, f=ccw))
                    else:
                        center, radius = circle_center_radius(curve, bits)
                        r = min(ARGS_DIM - 1, round(radius / 2 * ARGS_DIM))
                        rows.append(_row(CIRCLE, **dict(zip("xy", _num(center))), r=r))
            if extrude.operation == "add":
                boolean = 0 if pair_index == 0 and face_index == 0 else 1
            else:
                boolean = BOOLEANS.index("Cut" if extrude.operation == "cut" else "Intersect")
            px, py, pz = _num(position)
            e1, e2 = _num(extent)
            rows.append(_row(EXT, theta=angles[0], phi=angles[1], gamma=angles[2], px=px, py=py, pz=pz,
                             s=min(ARGS_DIM - 1, round(scale / 2 * ARGS_DIM)), e1=e1, e2=e2, b=boolean, u=extent_type))
    rows.append(_row(EOS))
    return np.asarray(rows, dtype=np.int64)


# ----- reader ------------------------------------------------------------------------------------------------------
def _quantize_point(point, bits: int) -> tuple[int, int]:
    return tuple(int(v) for v in quantize(point, bits, SKETCH_RANGE))


def _read_loop(rows: list[np.ndarray], bits: int, where: str) -> Loop:
    if not rows:
        raise CADValidationError(where, "open loop: SOL followed by no curve")
    if rows[0][0] == CIRCLE:
        if len(rows) > 1:
            raise CADValidationError(where, "open loop: a circle must be alone in its loop")
        center = _denum(rows[0][1:3])
        radius = rows[0][5] / ARGS_DIM * 2
        grid_center = quantize(center, bits, SKETCH_RANGE)
        grid_radius = int(round(radius / (2.0 / (2**bits - 1))))
        return Loop([Curve("circle", circle_points(tuple(grid_center), grid_radius))])
    ends = [_denum(row[1:3]) for row in rows]
    curves = []
    for index, row in enumerate(rows):
        start = ends[index - 1]  # the previous end; the first curve starts where the last ends
        if row[0] == LINE:
            curves.append(Curve("line", (_quantize_point(start, bits),)))
        elif row[0] == ARC:
            mid = arc_mid(start, ends[index], row[3] / ARGS_DIM * 2 * math.pi, int(row[4]))
            curves.append(Curve("arc", (_quantize_point(start, bits), _quantize_point(mid, bits))))
        else:
            raise CADValidationError(where, f"unexpected {COMMANDS[row[0]]} inside a loop of lines and arcs")
    return Loop(curves)


def read_deepcad(vector, *, bits: int = 6, check: bool = True) -> CADSequence:
    """`[N, 17]` DeepCAD rows -> a sequence on the `bits` grid (one pair per Ext)."""
    rows = np.asarray(vector, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != 1 + N_ARGS:
        raise CADValidationError("", f"expected DeepCAD rows [N, {1 + N_ARGS}], got shape {rows.shape}")
    zero = 2 ** (bits - 1)
    pairs, loops, faces_loops, current = [], [], [], None
    for index, row in enumerate(rows):
        command = int(row[0])
        if command not in range(len(COMMANDS)):
            raise CADValidationError(f"row {index}", f"unknown command {command}; expected 0-5 ({', '.join(COMMANDS)})")
        where = f"pair {len(pairs)}, loop {len(loops)}"
        if command == EOS:
            break
        if command == SOL:
            if current is not None:
                loops.append(_read_loop(current, bits, where))
            current = []
        elif command in (LINE, ARC, CIRCLE):
            if current is None:
                raise CADValidationError(f"row {index}", f"{COMMANDS[command]} before any SOL")
            current.append(row)
        else:  # Ext closes the profile
            if current is None:
                raise CADValidationError(f"row {index}", "count mismatch: Ext without a sketch")
            loops.append(_read_loop(current, bits, where))
            current = None
            faces_loops = loops
            loops = []
            args = row[1:]
            theta, phi, gamma = (_denum(args[5:8]) * math.pi).tolist()
            axes = angles_to_axes(theta, phi, gamma)
            x_axis, y_axis, normal = np.asarray(axes, dtype=np.float64).reshape(3, 3)
            position = _denum(args[8:11])
            grid_zero = float(dequantize(zero, bits, EXTRUDE_RANGE))
            offset = np.array([position @ x_axis, position @ y_axis]) - grid_zero
            origin = (position @ normal) * normal + grid_zero * (x_axis + y_axis)
            boolean = int(args[14])
            if boolean not in range(4):
                raise CADValidationError(f"row {index}", f"unknown boolean {boolean}; expected 0-3 ({', '.join(BOOLEANS)})")
            extrude = Extrude(
                operation=("add", "add", "cut", "intersect")[boolean],
                extent=tuple(quantize(_denum(args[12:14]), bits, EXTRUDE_RANGE)),
                origin=tuple(quantize(origin, bits, EXTRUDE_RANGE)),
                axes=axes,
                scale=int(quantize(args[11] / ARGS_DIM * 2, bits, SCALE_RANGE)),
                offset=tuple(quantize(offset, bits, (-0.9, 0.9))),
            )
            pairs.append((Sketch([Face(faces_loops)]), extrude))
    if current is not None or loops:
        raise CADValidationError("", "count mismatch: a sketch after the last Ext has no extrusion")
    sequence = CADSequence(pairs, bits=bits)
    if check:
        validate(sequence)
    return sequence
