"""Procedural 3D shapes: exact occupancy, exact surface samples with normals, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from modalzoo.data import PROCEDURAL
from modalzoo.data.shapes3d import BOUND, Primitive, Shape, held_out_shapes, random_primitive, random_shape

IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def test_registered_and_deterministic_by_seed():
    generator = PROCEDURAL["shapes3d"]
    first = generator(3, np.random.default_rng([0x5EED, 3]))
    again = generator(3, np.random.default_rng([0x5EED, 3]))
    other = generator(4, np.random.default_rng([0x5EED, 4]))
    assert first == again and first != other
    a, _ = first.sample_surface(100, np.random.default_rng(1))
    b, _ = again.sample_surface(100, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert held_out_shapes(3) == held_out_shapes(3)


def test_sphere_occupancy_volume_and_samples_are_exact():
    sphere = Shape(primitive=Primitive("sphere", (0.5,), (0.1, -0.2, 0.0), IDENTITY))
    queries = np.random.default_rng(0).uniform(-1, 1, (200_000, 3))
    volume = sphere.contains(queries).mean() * 8.0
    assert volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.02)
    points, normals = sphere.sample_surface(500, np.random.default_rng(0))
    offsets = points - np.array([0.1, -0.2, 0.0])
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), 0.5, atol=1e-6)
    np.testing.assert_allclose(normals, offsets / 0.5, atol=1e-6)


@pytest.mark.parametrize("kind", ["sphere", "box", "torus", "capsule", "cylinder"])
def test_primitive_samples_lie_on_the_surface_with_outward_normals(kind):
    primitive = random_primitive(np.random.default_rng(7), kind=kind)
    points, normals = primitive.sample_surface(2000, np.random.default_rng(1))
    np.testing.assert_allclose(primitive.sdf(points), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert primitive.contains(points - 1e-3 * normals).all()
    assert not primitive.contains(points + 1e-3 * normals).any()


def test_box_samples_are_uniform_by_area():
    box = Primitive("box", (0.5, 0.2, 0.1))
    _, normals = box.sample_surface(60_000, np.random.default_rng(0))
    shares = np.abs(normals).mean(axis=0)  # share of samples on the faces normal to x, y, z
    areas = np.array([0.2 * 0.1, 0.5 * 0.1, 0.5 * 0.2])
    np.testing.assert_allclose(shares, areas / areas.sum(), atol=0.01)


def test_torus_hole_is_empty_and_tube_is_full():
    torus = Shape(primitive=Primitive("torus", (0.5, 0.1)))
    assert not torus.contains(np.zeros((1, 3)))[0]
    assert torus.contains(np.array([[0.5, 0.0, 0.0], [0.0, -0.55, 0.05]])).all()


def test_difference_carves_and_flips_the_cutter_normals():
    outer = Primitive("box", (0.5, 0.5, 0.5))
    cutter = Primitive("sphere", (0.4,), (0.5, 0.0, 0.0))
    shape = Shape(operation="difference", left=Shape(primitive=outer), right=Shape(primitive=cutter))
    assert shape.contains(np.array([[-0.3, 0.0, 0.0]]))[0]
    assert not shape.contains(np.array([[0.3, 0.0, 0.0]]))[0]  # carved away
    points, normals = shape.sample_surface(3000, np.random.default_rng(0))
    on_cutter = np.abs(cutter.sdf(points)) < 1e-6
    assert on_cutter.any() and (~on_cutter).any()
    # inside the box the carved surface faces the sphere's centre
    towards_centre = (np.array([0.5, 0.0, 0.0]) - points[on_cutter]) / 0.4
    np.testing.assert_allclose(normals[on_cutter], towards_centre, atol=1e-6)
    assert shape.contains(points - 1e-3 * normals).mean() > 0.99
    assert (~shape.contains(points + 1e-3 * normals)).mean() > 0.99


def test_union_keeps_only_the_outer_surface():
    a = Shape(primitive=Primitive("sphere", (0.4,), (-0.2, 0.0, 0.0)))
    b = Shape(primitive=Primitive("sphere", (0.4,), (0.2, 0.0, 0.0)))
    union = Shape(operation="union", left=a, right=b)
    points, normals = union.sample_surface(2000, np.random.default_rng(0))
    for part in (a, b):  # on or outside each sphere (to float32 rounding), never inside the other
        assert (part.primitive.sdf(points) > -1e-6).all()
    assert union.contains(points - 1e-3 * normals).mean() > 0.99


def test_generated_shapes_fit_the_bound_and_are_not_empty():
    for index in range(40):
        shape = random_shape(np.random.default_rng([1, index]))
        points, _ = shape.sample_surface(500, np.random.default_rng(0))
        assert np.abs(points).max() <= BOUND + 1e-6
        assert shape.contains(np.random.default_rng(2).uniform(-1, 1, (20_000, 3))).mean() > 0.001


def test_bad_primitives_are_rejected_with_the_expected_form():
    with pytest.raises(ValueError, match="one of"):
        Primitive("cone", (1.0,))
    with pytest.raises(ValueError, match="tube radius < ring radius"):
        Primitive("torus", (0.1, 0.2))
    with pytest.raises(ValueError, match="needs 3 positive"):
        Primitive("box", (0.1, 0.2))
    with pytest.raises(ValueError, match="\\[N, 3\\]"):
        Shape(primitive=Primitive("sphere", (0.5,))).contains(np.zeros(3))
