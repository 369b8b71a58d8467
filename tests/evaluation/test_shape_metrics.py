"""Shape metrics on hand-computable cases and on real meshes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh

from modalzoo.data.shapes3d import Primitive, Shape, held_out_shapes
from modalzoo.evaluation import chamfer_distance, cross_scale_iou, fscore, volumetric_iou
from modalzoo.evaluation.shape_metrics import evaluate_shape_tokenizer, nearest_distances, surface_points
from modalzoo.models.vat import VATProcessor, VATTokenizer


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


class _ExactOccupancy(torch.nn.Module):
    """VAT's decode interface backed by the shapes' exact occupancy: what a perfect tokenizer
    would score through `evaluate_shape_tokenizer` (marching cubes, surface sampling, metrics)."""

    def __init__(self, shapes):
        super().__init__()
        self.shapes, self.index = shapes, -1
        self.weight = torch.nn.Parameter(torch.zeros(1))  # the evaluator reads the device from it
        self.config = SimpleNamespace(scales=[1, 2], codebook_size=512)

    def encode(self, points, normals):
        self.index += 1  # the evaluator encodes the shapes in order
        return SimpleNamespace(codes=torch.zeros(1, 1, 2, dtype=torch.long))

    def decode_triplane(self, codes, num_scales):
        return self.shapes[self.index]

    def occupancy(self, shape, queries):
        return torch.from_numpy(shape.contains(queries[0].numpy()).astype(np.float32))[None]

    def occupancy_grid(self, shape, resolution):
        grid = VATTokenizer.grid_points(resolution)[None]
        return self.occupancy(shape, grid).view(1, resolution, resolution, resolution)


def test_exact_occupancy_scores_perfectly_through_the_vat_evaluation_path():
    # The measuring stick itself: exact occupancy through the same grid, marching cubes, frames
    # and metrics as a VAT model scores F ~ 1 and IoU 1 (at 128^3 on 10 held-out shapes: F 1.000,
    # IoU 1.000, Chamfer 0.0038), so a low model score is the model's, not the evaluator's.
    shapes = held_out_shapes(3)
    processor = VATProcessor()
    for shape in shapes:  # the points the model encodes lie on the shape in the evaluation frame
        item = processor.training_item(shape, np.random.default_rng(0))
        exact, _ = shape.sample_surface(50_000, np.random.default_rng(1))
        assert np.percentile(nearest_distances(item["points"], exact), 99) < 0.02
    result = evaluate_shape_tokenizer(
        _ExactOccupancy(shapes), processor, shapes, resolution=64, num_surface_points=30_000, num_volume_queries=20_000
    )
    assert result["iou"] == 1.0 and result["empty_meshes"] == 0, result
    assert result["fscore"] > 0.98 and result["chamfer"] < 0.01, result
