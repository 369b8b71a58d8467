"""Procedural 3D shapes with exact occupancy and exact surface samples (VAT training and tests).

A `Shape` is a CSG tree over analytic primitives (sphere, box, torus, capsule, cylinder), each
placed by a rotation and a centre. Occupancy is exact for any query (inside a union = inside
either, inside a difference = inside A and not inside B), because it only needs the sign of each
primitive's signed distance. Surface samples are exact too: every primitive's surface is sampled
uniformly by area with its analytic normal, and a sample is kept only where it lies on the
boundary of the CSG result (a union keeps A's surface outside B; a difference keeps A's surface
outside B and B's surface inside A, with B's normal flipped). No meshing is involved.

`procedural_shape(index, rng)` is registered as `procedural:shapes3d`: the same (index, seed)
always gives the same shape, and every shape lies inside [-0.9, 0.9]^3, leaving a margin in the
[-1, 1]^3 cube the models work in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register_procedural

PRIMITIVES = ("sphere", "box", "torus", "capsule", "cylinder")
BOUND = 0.9  # every generated shape fits in [-BOUND, BOUND]^3


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, sign-corrected)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class Primitive:
    """An analytic solid in its local frame (axis along z for torus / capsule / cylinder), placed
    by `rotation` (local -> world) and `center`. `size` holds: sphere (r,), box (hx, hy, hz),
    torus (R, r), capsule (half_length, r), cylinder (half_height, r)."""

    kind: str
    size: tuple[float, ...]
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def __post_init__(self):
        if self.kind not in PRIMITIVES:
            raise ValueError(f"primitive kind must be one of {PRIMITIVES}, got {self.kind!r}")
        expected = {"sphere": 1, "box": 3, "torus": 2, "capsule": 2, "cylinder": 2}[self.kind]
        if len(self.size) != expected or min(self.size) <= 0:
            raise ValueError(f"a {self.kind} needs {expected} positive size value(s), got {self.size}")
        if self.kind == "torus" and self.size[1] >= self.size[0]:
            raise ValueError(f"a torus needs tube radius < ring radius, got {self.size}")

    # ----- frames ---------------------------------------------------------------------------------
    @property
    def _rotation(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=np.float64)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) @ self._rotation

    def to_world(self, points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return points @ self._rotation.T + np.asarray(self.center), normals @ self._rotation.T

    # ----- signed distance (negative inside) --------------------------------------------------------
    def sdf(self, points: np.ndarray) -> np.ndarray:
        p = self.to_local(points)
        if self.kind == "sphere":
            return np.linalg.norm(p, axis=-1) - self.size[0]
        if self.kind == "box":
            q = np.abs(p) - np.asarray(self.size)
            return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)
        if self.kind == "torus":
            ring, tube = self.size
            radial = np.linalg.norm(p[:, :2], axis=-1) - ring
            return np.hypot(radial, p[:, 2]) - tube
        if self.kind == "capsule":
            half, radius = self.size
            axial = np.clip(p[:, 2], -half, half)
            return np.linalg.norm(p - np.stack([0 * axial, 0 * axial, axial], -1), axis=-1) - radius
        half, radius = self.size  # cylinder
        d = np.stack([np.linalg.norm(p[:, :2], axis=-1) - radius, np.abs(p[:, 2]) - half], -1)
        return np.linalg.norm(np.maximum(d, 0.0), axis=-1) + np.minimum(d.max(axis=-1), 0.0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        return self.sdf(points) < 0.0

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere around `center` that holds the primitive (for placement)."""
        if self.kind == "sphere":
            return self.size[0]
        if self.kind == "box":
            return float(np.linalg.norm(self.size))
        if self.kind == "torus":
            return self.size[0] + self.size[1]
        if self.kind == "capsule":
            return self.size[0] + self.size[1]
        return float(np.hypot(*self.size))

    # ----- surface ------------------------------------------------------------------------------------
    def area(self) -> float:
        if self.kind == "sphere":
            return 4 * np.pi * self.size[0] ** 2
        if self.kind == "box":
            hx, hy, hz = self.size
            return 8 * (hx * hy + hy * hz + hx * hz)
        if self.kind == "torus":
            return 4 * np.pi**2 * self.size[0] * self.size[1]
        half, radius = self.size
        if self.kind == "capsule":
            return 4 * np.pi * radius**2 + 2 * np.pi * radius * 2 * half
        return 2 * np.pi * radius * 2 * half + 2 * np.pi * radius**2

    def sample_surface(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`count` points uniformly distributed by area on the surface, with outward unit normals."""
        points, normals = _LOCAL_SAMPLERS[self.kind](self.size, count, rng)
        return self.to_world(points, normals)


def _sphere_directions(count: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal((count, 3)))


def _sample_sphere(size, count, rng):
    normals = _sphere_directions(count, rng)
    return normals * size[0], normals


def _sample_box(size, count, rng):
    half = np.asarray(size)
    face_areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    axis = rng.choice(3, size=count, p=face_areas / face_areas.sum())
    sign = rng.choice([-1.0, 1.0], size=count)
    points = rng.uniform(-1.0, 1.0, (count, 3)) * half
    points[np.arange(count), axis] = sign * half[axis]
    normals = np.zeros((count, 3))
    normals[np.arange(count), axis] = sign
    return points, normals


def _sample_torus(size, count, rng):
    ring, tube = size
    # area element ∝ (R + r cos v): rejection-sample v
    chosen = np.empty(0)
    while chosen.size < count:
        v = rng.uniform(0, 2 * np.pi, 2 * count)
        keep = rng.uniform(0, ring + tube, v.size) < ring + tube * np.cos(v)
        chosen = np.concatenate([chosen, v[keep]])
    v = chosen[:count]
    u = rng.uniform(0, 2 * np.pi, count)
    normals = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], -1)
    centre = np.stack([ring * np.cos(u), ring * np.sin(u), 0 * u], -1)
    return centre + tube * normals, normals


def _sample_capsule(size, count, rng):
    half, radius = size
    side = 2 * np.pi * radius * 2 * half
    caps = 4 * np.pi * radius**2
    on_side = rng.uniform(0, side + caps, count) < side
    normals = _sphere_directions(count, rng)
    points = normals * radius
    points[:, 2] += np.where(normals[:, 2] >= 0, half, -half)
    angle = rng.uniform(0, 2 * np.pi, count)
    side_normals = np.stack([np.cos(angle), np.sin(angle), 0 * angle], -1)
    side_points = side_normals * radius
    side_points[:, 2] = rng.uniform(-half, half, count)
    return np.where(on_side[:, None], side_points, points), np.where(on_side[:, None], side_normals, normals)


def _sample_cylinder(size, count, rng):
    half, radius = size
    side = 2 * np.pi * radius * 2 * half
    caps = 2 * np.pi * radius**2
    on_side = rng.uniform(0, side + caps, count) < side
    angle = rng.uniform(0, 2 * np.pi, count)
    radial = np.stack([np.cos(angle), np.sin(angle), 0 * angle], -1)
    sign = rng.choice([-1.0, 1.0], size=count)
    cap_points = radial * radius * np.sqrt(rng.uniform(0, 1, count))[:, None]
    cap_points[:, 2] = sign * half
    cap_normals = np.zeros((count, 3))
    cap_normals[:, 2] = sign
    side_points = radial * radius
    side_points[:, 2] = rng.uniform(-half, half, count)
    return (
        np.where(on_side[:, None], side_points, cap_points),
        np.where(on_side[:, None], radial, cap_normals),
    )


_LOCAL_SAMPLERS = {
    "sphere": _sample_sphere,
    "box": _sample_box,
    "torus": _sample_torus,
    "capsule": _sample_capsule,
    "cylinder": _sample_cylinder,
}


@dataclass(frozen=True)
class Shape:
    """A primitive, or `operation` ("union" | "difference") of two shapes."""

    primitive: Primitive | None = None
    operation: str | None = None
    left: Shape | None = None
    right: Shape | None = None

    def __post_init__(self):
        if (self.primitive is None) == (self.operation is None):
            raise ValueError("a Shape is either a primitive or an operation on two shapes")
        if self.operation is not None and (self.operation not in ("union", "difference") or self.left is None or self.right is None):
            raise ValueError(f"operation must be 'union' or 'difference' with two operands, got {self.operation!r}")

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Exact occupancy of `[N, 3]` points (bool `[N]`)."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected query points [N, 3], got shape {points.shape}")
        if self.primitive is not None:
            return self.primitive.contains(points)
        inside_left, inside_right = self.left.contains(points), self.right.contains(points)
        return inside_left | inside_right if self.operation == "union" else inside_left & ~inside_right

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        return self.contains(points).astype(np.float32)

    def _surface_candidates(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Points on this tree's boundary, roughly `count` before filtering, uniform by area."""
        if self.primitive is not None:
            return self.primitive.sample_surface(count, rng)
        left_area, right_area = self.left.area_upper_bound(), self.right.area_upper_bound()
        left_count = int(round(count * left_area / (left_area + right_area)))
        lp, ln = self.left._surface_candidates(left_count, rng)
        rp, rn = self.right._surface_candidates(count - left_count, rng)
        if self.operation == "union":
            keep_left, keep_right = ~self.right.contains(lp), ~self.left.contains(rp)
            return np.concatenate([lp[keep_left], rp[keep_right]]), np.concatenate([ln[keep_left], rn[keep_right]])
        keep_left, keep_right = ~self.right.contains(lp), self.left.contains(rp)
        return np.concatenate([lp[keep_left], rp[keep_right]]), np.concatenate([ln[keep_left], -rn[keep_right]])

    def area_upper_bound(self) -> float:
        """Sum of the primitives' areas (the CSG surface is a subset of their surfaces)."""
        if self.primitive is not None:
            return self.primitive.area()
        return self.left.area_upper_bound() + self.right.area_upper_bound()

    def sample_surface(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`count` points uniform by area on the shape's surface with outward unit normals,
        as float32 `[count, 3]` arrays."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        points, normals = np.empty((0, 3)), np.empty((0, 3))
        budget = count
        for _ in range(64):
            more_points, more_normals = self._surface_candidates(2 * budget, rng)
            points, normals = np.concatenate([points, more_points]), np.concatenate([normals, more_normals])
            if len(points) >= count:
                order = rng.permutation(len(points))[:count]
                return points[order].astype(np.float32), _unit(normals[order]).astype(np.float32)
            budget *= 2
        raise ValueError("the shape has (almost) no surface: the CSG result is empty")

    def primitives(self) -> list[Primitive]:
        if self.primitive is not None:
            return [self.primitive]
        return self.left.primitives() + self.right.primitives()


# ----- the generator ------------------------------------------------------------------------------------
def random_primitive(rng: np.random.Generator, kind: str | None = None, max_radius: float = 0.6) -> Primitive:
    """A primitive of random kind, size and orientation, centred at the origin, whose bounding
    radius is at most `max_radius`."""
    kind = kind or PRIMITIVES[int(rng.integers(len(PRIMITIVES)))]
    scale = rng.uniform(0.55, 1.0) * max_radius
    if kind == "sphere":
        size = (scale,)
    elif kind == "box":
        size = tuple(_unit(rng.uniform(0.3, 1.0, 3)) * scale)
    elif kind == "torus":
        tube = scale * rng.uniform(0.2, 0.4)
        size = (scale - tube, tube)
    else:  # capsule, cylinder: half length along z plus a radius, bounded by `scale`
        radius = scale * rng.uniform(0.3, 0.6)
        half = np.sqrt(scale**2 - radius**2) if kind == "cylinder" else scale - radius
        size = (half, radius)
    rotation = tuple(map(tuple, random_rotation(rng)))
    return Primitive(kind, tuple(float(s) for s in size), (0.0, 0.0, 0.0), rotation)


def _placed(primitive: Primitive, center: np.ndarray) -> Primitive:
    return Primitive(primitive.kind, primitive.size, tuple(float(c) for c in center), primitive.rotation)


def random_shape(rng: np.random.Generator, *, csg_probability: float = 0.5) -> Shape:
    """One primitive, or a union / difference of two, all inside [-BOUND, BOUND]^3.

    A difference cuts a smaller primitive into a larger one at an offset, so it always leaves a
    non-empty, visibly carved solid; a union joins two overlapping primitives."""
    first = random_primitive(rng, max_radius=0.75)
    if rng.uniform() >= csg_probability:
        return Shape(primitive=first)
    operation = "union" if rng.uniform() < 0.5 else "difference"
    second = random_primitive(rng, max_radius=0.45 if operation == "difference" else 0.55)
    direction = _unit(rng.standard_normal(3))
    offset = direction * first.bounding_radius * rng.uniform(0.4, 0.8)
    # centre the pair so that the bounding spheres of both fit in the cube
    low = np.minimum(-first.bounding_radius, offset - second.bounding_radius)
    high = np.maximum(first.bounding_radius, offset + second.bounding_radius)
    shift = -(low + high) / 2
    extent = float((high - low).max() / 2)
    factor = min(1.0, BOUND / extent)
    first = _scaled(_placed(first, shift), factor)
    second = _scaled(_placed(second, offset + shift), factor)
    return Shape(operation=operation, left=Shape(primitive=first), right=Shape(primitive=second))


def _scaled(primitive: Primitive, factor: float) -> Primitive:
    return Primitive(
        primitive.kind,
        tuple(s * factor for s in primitive.size),
        tuple(c * factor for c in primitive.center),
        primitive.rotation,
    )


@register_procedural("shapes3d")
def procedural_shape(index: int, rng: np.random.Generator) -> Shape:
    """The trainer's generator: `rng` is seeded from the item index, so items are reproducible."""
    return random_shape(rng)


def held_out_shapes(count: int, seed: int = 20241203) -> list[Shape]:
    """Shapes from a seed stream the trainer never uses (it seeds items with [0x5EED, index])."""
    return [random_shape(np.random.default_rng([seed, index])) for index in range(count)]
