"""VAT point-cloud processor: meshes or points + normals in, `points` / `normals` tensors out;
occupancy grids back to meshes (scikit-image marching cubes) in `postprocess`.

Input normalisation: the bounding box of the mesh (or of the points) is centred at the origin and
scaled so that its largest half-extent is `normalize_scale` (0.9: a margin inside the model's
[-1, 1]^3 cube keeps surfaces away from the grid border, where marching cubes could not close
them). Meshes are sampled uniformly by area with their face normals, deterministically
(`seed`). Point clouds with a different number of points are subsampled or repeated, again
deterministically. `postprocess` returns meshes in the model's cube coordinates.

Training (`modalzoo train`, `procedural:shapes3d`): `training_item(shape, rng)` samples an
analytic shape's surface with exact normals, `num_near_queries` near-surface queries (surface
points plus Gaussian noise of each of `near_surface_sigmas`) and `num_uniform_queries` uniform
queries in the cube, all labelled with the shape's exact occupancy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature
from transformers.feature_extraction_utils import FeatureExtractionMixin


def _require(module: str, extra: str = "3d"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is needed here: pip install 'modalzoo[{extra}]'") from error


def occupancy_grid_to_mesh(grid, threshold: float = 0.5):
    """An occupancy grid `[R, R, R]` sampled at `linspace(-1, 1, R)` on each axis (index order
    x, y, z) -> a trimesh mesh at the `threshold` level set (scikit-image marching cubes). The
    grid is padded with empty cells so that shapes touching the border still close; an
    all-empty or all-full grid gives an empty mesh."""
    trimesh = _require("trimesh")
    measure = _require("skimage.measure")
    grid = np.asarray(grid.detach().float().cpu() if torch.is_tensor(grid) else grid, dtype=np.float32)
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise ValueError(f"expected a cubic occupancy grid [R, R, R], got shape {grid.shape}")
    resolution = grid.shape[0]
    padded = np.pad(grid, 1, constant_values=0.0)
    if not padded.min() < threshold < padded.max():
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64))
    spacing = 2.0 / (resolution - 1)
    vertices, faces, _, _ = measure.marching_cubes(padded, level=threshold, spacing=(spacing,) * 3)
    vertices = vertices - spacing - 1.0  # undo the padding; index 0 is at -1
    # skimage orients faces towards increasing values (the inside); flip them to face outwards
    return trimesh.Trimesh(vertices=vertices, faces=faces[:, ::-1].copy(), process=False)


class VATProcessor(FeatureExtractionMixin):
    model_input_names = ["points", "normals"]

    def __init__(
        self,
        num_points: int = 8192,
        normalize_scale: float = 0.9,
        num_near_queries: int = 4096,
        num_uniform_queries: int = 4096,
        near_surface_sigmas: list[float] | tuple[float, ...] = (0.005, 0.02),
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 < normalize_scale <= 1:
            raise ValueError(f"normalize_scale must be in (0, 1], got {normalize_scale}")
        self.num_points = int(num_points)
        self.normalize_scale = float(normalize_scale)
        self.num_near_queries = int(num_near_queries)
        self.num_uniform_queries = int(num_uniform_queries)
        self.near_surface_sigmas = [float(s) for s in near_surface_sigmas]
        self.seed = int(seed)

    @classmethod
    def from_model_config(cls, config) -> VATProcessor:
        return cls(
            num_points=config.num_points,
            num_near_queries=config.num_near_queries,
            num_uniform_queries=config.num_uniform_queries,
            near_surface_sigmas=config.near_surface_sigmas,
        )

    # ----- input -------------------------------------------------------------------------------
    def __call__(self, meshes=None, *, points=None, normals=None, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """`meshes`: a trimesh mesh or a list of them; or `points` + `normals`: `[P, 3]` arrays, a
        `[B, P, 3]` array or lists of `[P, 3]` arrays (normals need not be unit length)."""
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if (meshes is None) == (points is None):
            raise ValueError("pass either meshes (trimesh) or points together with normals")
        if meshes is not None:
            items = [self._sample_mesh(mesh) for mesh in (meshes if isinstance(meshes, (list, tuple)) else [meshes])]
        else:
            if normals is None:
                raise ValueError("VAT encodes xyz together with normals: pass normals [P, 3] with the points")
            point_list, normal_list = self._as_item_list(points, "points"), self._as_item_list(normals, "normals")
            if len(point_list) != len(normal_list):
                raise ValueError(f"got {len(point_list)} point clouds but {len(normal_list)} normal sets")
            items = [self._normalize_points(p, n) for p, n in zip(point_list, normal_list)]
        if not items:
            raise ValueError("expected at least one shape, got an empty list")
        data = {
            "points": torch.from_numpy(np.stack([p for p, _ in items])),
            "normals": torch.from_numpy(np.stack([n for _, n in items])),
        }
        return BatchFeature(data, tensor_type=return_tensors)

    @staticmethod
    def _as_item_list(value, what: str) -> list[np.ndarray]:
        if torch.is_tensor(value):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.ndim == 2:
                return [value]
            if value.ndim == 3:
                return list(value)
            raise ValueError(f"{what} must be [P, 3] or [B, P, 3], got shape {value.shape}")
        if isinstance(value, (list, tuple)):
            return [np.asarray(v.detach().cpu() if torch.is_tensor(v) else v) for v in value]
        raise ValueError(f"{what} must be a numpy array, tensor or list of them, got {type(value).__name__}")

    def _resample(self, count: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if count >= self.num_points:
            return np.sort(rng.choice(count, self.num_points, replace=False))
        return np.concatenate([np.arange(count), rng.choice(count, self.num_points - count, replace=True)])

    def _normalization(self, coordinates: np.ndarray) -> tuple[np.ndarray, float]:
        low, high = coordinates.min(0), coordinates.max(0)
        half_extent = float((high - low).max() / 2)
        if half_extent <= 0:
            raise ValueError("the shape has zero extent (all points coincide)")
        return (low + high) / 2, self.normalize_scale / half_extent

    def _normalize_points(self, points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float64)
        normals = np.asarray(normals, dtype=np.float64)
        if points.ndim != 2 or points.shape[-1] != 3 or len(points) == 0:
            raise ValueError(f"expected points [P, 3] with P >= 1, got shape {points.shape}")
        if normals.shape != points.shape:
            raise ValueError(f"normals must match points {points.shape}, got shape {normals.shape}")
        if not (np.isfinite(points).all() and np.isfinite(normals).all()):
            raise ValueError("points or normals contain NaN or Inf values")
        lengths = np.linalg.norm(normals, axis=-1, keepdims=True)
        if (lengths < 1e-12).any():
            raise ValueError(f"{int((lengths < 1e-12).sum())} normal(s) have zero length")
        center, scale = self._normalization(points)
        keep = self._resample(len(points))
        return ((points[keep] - center) * scale).astype(np.float32), (normals[keep] / lengths[keep]).astype(np.float32)

    def _sample_mesh(self, mesh) -> tuple[np.ndarray, np.ndarray]:
        trimesh = _require("trimesh")
        if not isinstance(mesh, trimesh.Trimesh):
            raise ValueError(f"expected a trimesh.Trimesh (or points + normals), got {type(mesh).__name__}")
        if len(mesh.faces) == 0:
            raise ValueError("the mesh has no faces")
        points, faces = trimesh.sample.sample_surface(mesh, self.num_points, seed=self.seed)
        normals = np.asarray(mesh.face_normals)[faces]
        center, scale = self._normalization(np.asarray(mesh.vertices))
        return ((np.asarray(points) - center) * scale).astype(np.float32), normals.astype(np.float32)

    # ----- output ------------------------------------------------------------------------------
    def postprocess(self, values: torch.Tensor, threshold: float = 0.5) -> list:
        """Occupancy grids `[B, R, R, R]` (what `decode` returns) -> trimesh meshes."""
        if values.ndim != 4:
            raise ValueError(f"expected occupancy grids [B, R, R, R], got shape {tuple(values.shape)}")
        return [occupancy_grid_to_mesh(grid, threshold) for grid in values]

    # ----- training (modalzoo train) ----------------------------------------------------------------
    def training_item(self, shape, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """An analytic shape (`modalzoo.data.shapes3d.Shape`, or anything with `sample_surface(n,
        rng)` and `contains(points)`) -> surface points, normals, queries and exact occupancy.
        `rng` None (evaluation) samples with the processor's fixed seed."""
        if not (hasattr(shape, "sample_surface") and hasattr(shape, "contains")):
            raise ValueError(
                f"training items must be analytic shapes with sample_surface() and contains(), got {type(shape).__name__}"
            )
        rng = np.random.default_rng(self.seed) if rng is None else rng
        points, normals = shape.sample_surface(self.num_points, rng)
        near, _ = shape.sample_surface(self.num_near_queries, rng)
        sigmas = np.asarray(self.near_surface_sigmas)[rng.integers(len(self.near_surface_sigmas), size=len(near))]
        near = near + rng.standard_normal(near.shape) * sigmas[:, None]
        uniform = rng.uniform(-1.0, 1.0, (self.num_uniform_queries, 3))
        queries = np.concatenate([near, uniform]).astype(np.float32)
        return {
            "points": np.asarray(points, dtype=np.float32),
            "normals": np.asarray(normals, dtype=np.float32),
            "queries": queries,
            "occupancy": shape.contains(queries).astype(np.float32),
            "near_surface": np.arange(len(queries)) < len(near),
        }

    def collate_training_items(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in items[0]}

    def save_training_samples(self, reference: torch.Tensor, reconstructions: torch.Tensor, folder) -> None:
        """The input point cloud (`.ply`) next to the reconstructed mesh (`.obj`) per item."""
        trimesh = _require("trimesh")
        folder = Path(folder)
        for index, (points, mesh) in enumerate(zip(reference, self.postprocess(reconstructions))):
            trimesh.PointCloud(points.detach().cpu().numpy()).export(folder / f"{index}-input.ply")
            mesh.export(folder / f"{index}-reconstruction.obj")
