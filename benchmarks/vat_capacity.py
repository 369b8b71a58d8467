"""Where VAT's reconstruction error lives: per held-out shape, the IoU of the shipped model's
decode against two per-shape optimisations through its frozen parts (Adam, BCE on the
processor's near-surface + uniform queries, IoU on 100k uniform queries as in vat_heldout.py):

* `latent`: the dequantised latent tokens are optimised, the decoder (triplane transformer,
  CNN upsampler, MLP head) frozen -> the best any encoder could do through this decoder;
* `triplane`: the triplane itself is optimised, only the MLP head frozen -> the ceiling of the
  triplane resolution and the head.

    python benchmarks/vat_capacity.py [MODEL_DIR] [--shapes 8] [--latent-steps 600] [--triplane-steps 1500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo.data.shapes3d import held_out_shapes
from modalzoo.evaluation.shape_metrics import volumetric_iou

DEFAULT_MODEL = Path(modalzoo.__file__).parent / "pretrained" / "vat_small"


def fit(model, processor, shape, variable, to_triplane, steps: int, seed: int, lr: float = 1e-2):
    variable = variable.clone().requires_grad_(True)
    optimizer, rng = torch.optim.Adam([variable], lr), np.random.default_rng(seed)
    for _ in range(steps):
        item = processor.training_item(shape, rng)
        logits = model.decoder.occupancy_logits(to_triplane(variable), torch.from_numpy(item["queries"])[None])[0]
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(item["occupancy"]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return to_triplane(variable.detach())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--shapes", type=int, default=8)
    parser.add_argument("--latent-steps", type=int, default=600)
    parser.add_argument("--triplane-steps", type=int, default=1500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(args.model).eval().requires_grad_(False)
    processor = AutoFeatureExtractor.from_pretrained(args.model)
    rows = []
    for index, shape in enumerate(held_out_shapes(args.shapes)):
        item = processor.training_item(shape, np.random.default_rng([0, index, 1]))  # as vat_heldout.py
        queries = np.random.default_rng([0, index]).uniform(-1, 1, (100_000, 3)).astype(np.float32)
        truth = shape.contains(queries)

        def iou(triplane):
            with torch.no_grad():
                return volumetric_iou(model.occupancy(triplane, torch.from_numpy(queries)[None])[0].numpy() > 0.5, truth)

        with torch.no_grad():
            codes = model.encode(torch.from_numpy(item["points"])[None], torch.from_numpy(item["normals"])[None]).codes
            latent = model.quantizer.dequantize(model._prefix_codes(codes), None)
            triplane = model.decoder(latent)
        row = (
            iou(triplane),
            iou(fit(model, processor, shape, latent, model.decoder, args.latent_steps, index)),
            iou(fit(model, processor, shape, triplane, lambda t: t, args.triplane_steps, index)),
        )
        rows.append(row)
        print(f"shape {index}: IoU shipped {row[0]:.3f}  latent-optimised {row[1]:.3f}  triplane-optimised {row[2]:.3f}", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"mean over {len(rows)}: shipped {mean[0]:.3f}  latent-optimised {mean[1]:.3f}  triplane-optimised {mean[2]:.3f}")


if __name__ == "__main__":
    main()
