"""How fast VAT's decoder path can sharpen a surface at all: vat-small (unquantised first phase)
trained on the same few shapes over and over, printing the occupancy BCE near the surface and
uniformly in the cube every 100 steps. Fresh query samples every step, so this measures how fast
the architecture learns a sharp boundary, not memorised labels.

    python benchmarks/vat_overfit.py [--shapes 1] [--steps 600] [--lr 5e-4] [config_key=value ...]
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np
import torch

import modalzoo
from modalzoo.data.shapes3d import procedural_shape


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="vat-small config key=value")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    overrides = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in args.overrides)}
    model = modalzoo.create_model("vat-small", quantize_start_step=10**9, **overrides).train()
    processor = modalzoo.create_processor(model.config)
    shapes = [procedural_shape(index, np.random.default_rng([0x5EED, index])) for index in range(args.shapes)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        items = [
            processor.training_item(shapes[(step * args.batch_size + slot) % len(shapes)], np.random.default_rng([step, slot]))
            for slot in range(args.batch_size)
        ]
        output = model(**processor.collate_training_items(items))
        losses = output.losses
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step} ({time.perf_counter() - started:.0f} s): near-surface BCE {losses['occupancy_near'].item():.3f}, "
                  f"uniform BCE {losses['occupancy_uniform'].item():.3f}", flush=True)


if __name__ == "__main__":
    main()
