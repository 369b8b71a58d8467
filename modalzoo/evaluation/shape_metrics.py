"""3D reconstruction metrics: Chamfer distance, F-score at a distance threshold, volumetric IoU
and VAT's cross-scale IoU.

Conventions (VAT's paper does not state its own; these follow Occupancy Networks / 3DShape2VecSet):

* shapes live in the [-1, 1]^3 cube, so a distance of 0.02 is 1% of the cube's side;
* point-set metrics compare points sampled uniformly on the two surfaces (the same count on
  both sides; `surface_points` samples a trimesh mesh deterministically);
* **Chamfer distance is the L1-Chamfer of Occupancy Networks**: the mean of the two directed
  mean nearest-neighbour *Euclidean* distances, 0.5 * (mean_p min_q |p - q| + mean_q min_p |q - p|)
  (not squared, not summed);
* **F-score at tau**: precision = fraction of predicted points within tau of the reference
  surface points, recall = fraction of reference points within tau of the predicted ones,
  F = 2PR / (P + R) (0 when both are 0); tau defaults to 0.02;
* **volumetric IoU** compares occupancy at the same query points (uniform in the cube or a grid);
* **cross-scale IoU** is the IoU between the decode from the first s scales and the decode from
  all scales at the same query points (how well a coarse prefix already agrees with the final
  shape), one value per s.

Nearest neighbours come from scipy's cKDTree (exact).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_TAU = 0.02


def _as_points(points, what: str) -> np.ndarray:
    array = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=np.float64)
    if array.ndim != 2 or array.shape[-1] != 3:
        raise ValueError(f"{what} must be points [N, 3], got shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"{what} is empty: at least one point is needed")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or Inf values")
    return array


def nearest_distances(source, target) -> np.ndarray:
    """For each point of `source`, the Euclidean distance to its nearest point of `target`."""
    from scipy.spatial import cKDTree

    source, target = _as_points(source, "source"), _as_points(target, "target")
    distances, _ = cKDTree(target).query(source, k=1)
    return distances


def chamfer_distance(predicted, reference) -> float:
    """L1-Chamfer (Occupancy Networks): 0.5 * (accuracy + completeness) with Euclidean
    nearest-neighbour distances averaged in each direction."""
    accuracy = nearest_distances(predicted, reference).mean()
    completeness = nearest_distances(reference, predicted).mean()
    return float(0.5 * (accuracy + completeness))


def fscore(predicted, reference, tau: float = DEFAULT_TAU) -> float:
    """F-score at distance `tau` between two surface samples (see the module docstring)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    precision = float((nearest_distances(predicted, reference) < tau).mean())
    recall = float((nearest_distances(reference, predicted) < tau).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def volumetric_iou(predicted, reference) -> float:
    """|P ∩ R| / |P ∪ R| of two boolean occupancies at the same query points (1.0 when both are
    empty: two empty shapes agree)."""
    predicted = np.asarray(predicted.detach().cpu() if hasattr(predicted, "detach") else predicted)
    reference = np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference)
    if predicted.shape != reference.shape:
        raise ValueError(f"occupancies must have the same shape, got {predicted.shape} and {reference.shape}")
    if predicted.dtype != bool or reference.dtype != bool:
        raise ValueError(f"occupancies must be boolean (threshold probabilities first), got {predicted.dtype} and {reference.dtype}")
    union = np.logical_or(predicted, reference).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, reference).sum() / union)


def cross_scale_iou(occupancy_per_scale: Sequence) -> list[float]:
    """IoU of each prefix decode (scales 1..s, s = 1..S) with the full decode (the last entry)."""
    if len(occupancy_per_scale) == 0:
        raise ValueError("expected one occupancy per number of scales, got none")
    final = occupancy_per_scale[-1]
    return [volumetric_iou(occupancy, final) for occupancy in occupancy_per_scale]


def surface_points(mesh, count: int, seed: int = 0) -> np.ndarray:
    """`count` points uniform by area on a trimesh mesh (deterministic for a seed)."""
    import trimesh

    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("the mesh has no faces (an empty reconstruction)")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points)


SHAPE_METRICS = ("chamfer", "fscore", "iou", "cross_scale_iou")  # what evaluate_shape_tokenizer reports


# ----- a 3D tokenizer on analytic shapes ---------------------------------------------------------------
def evaluate_shape_tokenizer(
    model,
    processor,
    shapes: Sequence,
    *,
    resolution: int = 128,
    num_surface_points: int = 100_000,
    num_volume_queries: int = 100000,
    tau: float = DEFAULT_TAU,
    seed: int = 0,
) -> dict:
    """Encodes each analytic shape (`modalzoo.data.shapes3d.Shape`: exact surface samples and
    occupancy) from the processor's surface sample, decodes it and measures:

    * `chamfer`, `fscore`: `num_surface_points` exact surface points (dense: with a few thousand
      the sample spacing alone exceeds tau = 0.02 and a perfect mesh scores F < 0.9) of the shape against as many
      points sampled on the marching-cubes mesh at `resolution`^3 (an empty mesh scores F = 0 and
      is counted in `empty_meshes`; its Chamfer is left out);
    * `iou`: volumetric IoU of the decoded occupancy and the exact one at `num_volume_queries`
      uniform points in [-1, 1]^3; `iou_per_scale[s-1]` the same decoded from the first s scales,
      `cross_scale_iou[s-1]` the prefix decode against the full decode;
    * `bits_per_shape` = codes x log2(codebook size), and the mean binary-PLY size of the
      reconstructed meshes, for the bytes-per-shape comparison.

    Returns means over shapes plus `per_shape` rows. The model must offer `encode`,
    `decode_triplane(codes, num_scales=)`, `occupancy(triplane, queries)` and
    `occupancy_grid(triplane, resolution)` (VAT)."""
    import math

    import torch

    from ..models.vat.processing_vat import occupancy_grid_to_mesh

    rows = []
    device = next(model.parameters()).device
    num_scales = len(model.config.scales)
    for index, shape in enumerate(shapes):
        rng = np.random.default_rng([seed, index])
        item = processor.training_item(shape, np.random.default_rng([seed, index, 1]))
        points = torch.from_numpy(item["points"])[None].to(device)
        normals = torch.from_numpy(item["normals"])[None].to(device)
        queries = rng.uniform(-1.0, 1.0, (num_volume_queries, 3)).astype(np.float32)
        truth = shape.contains(queries)
        with torch.no_grad():
            codes = model.encode(points, normals).codes
            occupancies = []
            for scales in range(1, num_scales + 1):
                triplane = model.decode_triplane(codes, num_scales=scales)
                occupancies.append(model.occupancy(triplane, torch.from_numpy(queries)[None].to(device))[0].cpu().numpy() > 0.5)
            grid = model.occupancy_grid(triplane, resolution)[0]
        mesh = occupancy_grid_to_mesh(grid)
        reference, _ = shape.sample_surface(num_surface_points, rng)
        if len(mesh.faces):
            predicted = surface_points(mesh, num_surface_points, seed=seed + index)
            chamfer, score = chamfer_distance(predicted, reference), fscore(predicted, reference, tau)
        else:
            chamfer, score = math.nan, 0.0
        rows.append(
            {
                "chamfer": chamfer,
                "fscore": score,
                "iou": volumetric_iou(occupancies[-1], truth),
                "iou_per_scale": [volumetric_iou(o, truth) for o in occupancies],
                "cross_scale_iou": cross_scale_iou(occupancies),
                "mesh_bytes": len(mesh.export(file_type="ply")) if len(mesh.faces) else 0,
                "empty_mesh": not len(mesh.faces),
            }
        )
    bits = codes.shape[-1] * codes.shape[-2] * math.log2(model.config.codebook_size)
    chamfers = [r["chamfer"] for r in rows if not math.isnan(r["chamfer"])]
    return {
        "num_shapes": len(rows),
        "tau": tau,
        "resolution": resolution,
        "chamfer": float(np.mean(chamfers)) if chamfers else math.nan,
        "fscore": float(np.mean([r["fscore"] for r in rows])),
        "iou": float(np.mean([r["iou"] for r in rows])),
        "iou_per_scale": np.mean([r["iou_per_scale"] for r in rows], axis=0).tolist(),
        "cross_scale_iou": np.mean([r["cross_scale_iou"] for r in rows], axis=0).tolist(),
        "empty_meshes": int(sum(r["empty_mesh"] for r in rows)),
        "codes_per_shape": int(codes.shape[-1] * codes.shape[-2]),
        "bits_per_shape": bits,
        "bytes_per_shape": bits / 8,
        "mesh_ply_bytes": float(np.mean([r["mesh_bytes"] for r in rows])),
        "per_shape": rows,
    }
