"""How sure VAT is inside shapes: per held-out shape, the fraction of the cube it fills, the median
predicted occupancy at uniform queries inside it, and the IoU at threshold 0.5.

    python benchmarks/vat_interior.py [MODEL_DIR] [--shapes 10] [--queries 50000]

Same shapes, point sampling and queries as `vat_heldout.py` (`evaluate_shape_tokenizer`), without
meshing. A well-resolved interior sits near 1; a blurred one (the decoder smooths a thin or small
shape below its own resolution) sits just above 0.5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo.data.shapes3d import held_out_shapes

DEFAULT_MODEL = Path(modalzoo.__file__).parent / "pretrained" / "vat_small"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--shapes", type=int, default=10)
    parser.add_argument("--queries", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoFeatureExtractor.from_pretrained(args.model)
    print("shape (primitives)                     filled  median p inside  IoU@0.5")
    medians = []
    for index, shape in enumerate(held_out_shapes(args.shapes)):
        item = processor.training_item(shape, np.random.default_rng([args.seed, index, 1]))
        queries = np.random.default_rng([args.seed, index]).uniform(-1.0, 1.0, (args.queries, 3)).astype(np.float32)
        inside = shape.contains(queries)
        with torch.no_grad():
            codes = model.encode(torch.from_numpy(item["points"])[None], torch.from_numpy(item["normals"])[None]).codes
            probabilities = model.occupancy(model.decode_triplane(codes), torch.from_numpy(queries)[None])[0].numpy()
        predicted = probabilities > 0.5
        iou = (predicted & inside).sum() / max(int((predicted | inside).sum()), 1)
        medians.append(float(np.median(probabilities[inside])))
        kinds = "+".join(primitive.kind for primitive in shape.primitives())
        print(f"{index:2d} {kinds:35s} {inside.mean():6.3f}  {medians[-1]:15.3f}  {iou:7.3f}")
    print(f"median over shapes of the median interior probability: {np.median(medians):.3f}")


if __name__ == "__main__":
    main()
