"""Shape metrics on hand-computable cases and on real meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from modalzoo.data.shapes3d import Primitive, Shape
from modalzoo.evaluation import chamfer_distance, cross_scale_iou, fscore, volumetric_iou
from modalzoo.evaluation.shape_metrics import surface_points


def test_chamfer_is_the_mean_of_the_two_directed_mean_distances():
    single = np.zeros((1, 3))
    pair = np.array([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    # single -> pair: 1; pair -> single: (1 + 3) / 2 = 2; L1-Chamfer = (1 + 2) / 2
    assert chamfer_distance(single, pair) == pytest.approx(1.5)
    assert chamfer_distance(pair, single) == pytest.approx(1.5)
    assert chamfer_distance(pair, pair) == 0.0


def test_fscore_from_precision_and_recall():
    reference = np.random.default_rng(0).uniform(-1, 1, (200, 3))
    predicted = np.concatenate([reference, reference + 5.0])  # precision 0.5, recall 1
    assert fscore(predicted, reference, tau=0.02) == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert fscore(reference + 0.015, reference, tau=0.02) == 0.0  # |(0.015,)*3| = 0.026 > tau
    assert fscore(reference + 0.01, reference, tau=0.02) == 1.0  # 0.017 < tau
    with pytest.raises(ValueError, match="tau must be positive"):
        fscore(reference, reference, tau=0.0)


def test_volumetric_and_cross_scale_iou():
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    assert volumetric_iou(a, b) == pytest.approx(1 / 3)
    assert volumetric_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert cross_scale_iou([b, a, a]) == pytest.approx([1 / 3, 1.0, 1.0])
    with pytest.raises(ValueError, match="boolean"):
        volumetric_iou(a.astype(float), b)
    with pytest.raises(ValueError, match="same shape"):
        volumetric_iou(a, b[:3])


def test_point_inputs_are_checked():
    with pytest.raises(ValueError, match="\\[N, 3\\]"):
        chamfer_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="empty"):
        fscore(np.zeros((0, 3)), np.zeros((4, 3)))


def test_a_fine_mesh_of_a_sphere_scores_against_exact_samples():
    sphere = Shape(primitive=Primitive("sphere", (0.5,)))
    # dense samples: with a few thousand points the spacing alone (~0.025 here) exceeds tau
    exact, _ = sphere.sample_surface(50_000, np.random.default_rng(0))
    fine = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    coarse = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    fine_points = surface_points(fine, 50_000, seed=0)
    coarse_points = surface_points(coarse, 50_000, seed=0)
    assert fscore(fine_points, exact) > 0.99
    assert chamfer_distance(fine_points, exact) < 0.01
    # the 80-face sphere's flat faces sit up to ~0.05 inside the sphere
    assert fscore(coarse_points, exact) < fscore(fine_points, exact) - 0.2
    assert chamfer_distance(coarse_points, exact) > chamfer_distance(fine_points, exact)
    np.testing.assert_array_equal(fine_points, surface_points(fine, 50_000, seed=0))
