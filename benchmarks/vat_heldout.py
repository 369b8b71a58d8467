"""VAT on held-out procedural shapes: Chamfer, F-score at tau, volumetric IoU per number of scales,
cross-scale IoU, and bytes per shape (codes x log2(codebook) bits against the mesh file size).

    python benchmarks/vat_heldout.py [MODEL_DIR] [--shapes 50] [--resolution 128] [--output FILE.json] [--write-card]

`--write-card` re-renders MODEL_DIR/README.md (the family card) with these held-out figures as
its model-index metrics, keeping the training section `modalzoo train` wrote.

Shapes come from `modalzoo.data.shapes3d.held_out_shapes` (a seed stream the trainer never uses).
Conventions are in `modalzoo/evaluation/shape_metrics.py` (L1-Chamfer, F-score at tau = 0.02 of
the [-1, 1] cube, 100k surface points each side, IoU on 100k uniform queries).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo  # noqa: F401  (registers the families)
from modalzoo.data.shapes3d import held_out_shapes
from modalzoo.evaluation.shape_metrics import evaluate_shape_tokenizer

DEFAULT_MODEL = Path(modalzoo.__file__).parent / "pretrained" / "vat_small"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--shapes", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--tau", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None)
    parser.add_argument("--write-card", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoFeatureExtractor.from_pretrained(args.model)
    started = time.perf_counter()
    result = evaluate_shape_tokenizer(
        model, processor, held_out_shapes(args.shapes), resolution=args.resolution, tau=args.tau
    )
    result["seconds"] = time.perf_counter() - started
    print(f"{args.model}: {result['num_shapes']} held-out shapes, marching cubes {args.resolution}^3")
    print(f"  Chamfer (L1) {result['chamfer']:.4f}   F-score@{args.tau:g} {result['fscore']:.3f}   IoU {result['iou']:.3f}   empty meshes {result['empty_meshes']}")
    print("  IoU by scales    " + " ".join(f"{v:.3f}" for v in result["iou_per_scale"]))
    print("  cross-scale IoU  " + " ".join(f"{v:.3f}" for v in result["cross_scale_iou"]))
    print(
        f"  {result['codes_per_shape']} codes x log2({model.config.codebook_size}) = {result['bits_per_shape']:.0f} bits "
        f"= {result['bytes_per_shape']:.1f} bytes per shape; reconstructed mesh (binary PLY) {result['mesh_ply_bytes'] / 1024:.1f} KiB "
        f"({result['mesh_ply_bytes'] / result['bytes_per_shape']:.0f}x)"
    )
    print(f"  {result['seconds']:.0f} s")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
    if args.write_card:
        write_card(model, Path(args.model), result)
    return result


def write_card(model, folder: Path, result: dict) -> None:
    from modalzoo.hub import render_model_card

    metrics = {"chamfer_l1": result["chamfer"], f"fscore@{result['tau']:g}": result["fscore"], "iou": result["iou"]}
    for scales, value in enumerate(result["cross_scale_iou"][:-1], start=1):
        metrics[f"cross_scale_iou_{scales}"] = value
    evaluation = {
        "dataset": {"name": f"procedural CSG shapes, {result['num_shapes']} held out", "type": "modalzoo/shapes3d", "split": "held-out"},
        "metrics": metrics,
    }
    readme = folder / "README.md"
    previous = readme.read_text() if readme.exists() else ""
    training = previous[previous.index("\n## Training\n") :] if "\n## Training\n" in previous else ""
    card = render_model_card(model, metrics=evaluation, base_model=None, tags=["modalzoo-train"])
    readme.write_text(str(card).rstrip("\n") + "\n" + training)


if __name__ == "__main__":
    main()
