"""SemantiCodec speed against the original (haoheliu/SemantiCodec-inference), same weights, CPU.

    python benchmarks/semanticodec_vs_original.py /path/to/SemantiCodec-inference [--threads 1]

Builds `--variant` (default `semanticodec-100-8192`) at full size and random init. All decoder
parameters are redrawn deterministically, because the zero-initialised output convolutions would
make the UNet's prediction trivially zero. The original comes from the `--compare-original`
plugin (`modalzoo.evaluation.originals.semanticodec`) with the same weights.

The audio is `--seconds` of a procedural chirp plus noise (10 s gives 504 frames, one 10.24 s
window). Each timing is one run after a one-step warm-up:
- encode, at batch 1;
- decode at each of `--steps`, at batch 1, both sides seeded alike. With one window both draw the
  same noise in the same order, so the decoded audio must agree; the script reports the largest
  difference;
- decode at `--batch` items with `--batch-steps` steps: modalzoo decodes the batch in one sampler
  run, the original (as its `decode`) one item after the other. Throughput ratio = original time /
  modalzoo time.

Wall and process CPU time are both reported: with one thread on a shared machine the CPU time is
the cost of the work itself, the wall time adds the waits for the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np
import torch

import modalzoo
from modalzoo.evaluation.benchmark import machine_info
from modalzoo.evaluation.originals import load_original


def redraw_decoder(model) -> None:
    """Every decoder parameter from a generator seeded by its name (std 1/sqrt(fan-in) for
    weights with 2 or more dims, 1 +/- 0.1 for norm scales, 0.1 for biases)."""
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            x = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                x = x / math.sqrt(p[0].numel())
            elif name.endswith("weight"):
                x = 1.0 + 0.1 * x
            else:
                x = 0.1 * x
            p.copy_(x)


def procedural_audio(batch: int, seconds: float, rate: int = 16000) -> torch.Tensor:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    items = [0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t * (1 + 0.2 * t)) + 0.02 * rng.standard_normal(t.shape) for i in range(batch)]
    return torch.tensor(np.stack(items), dtype=torch.float32)[:, None]


def once(fn, clock: dict):
    """(output, wall ms); the process CPU ms go to `clock["cpu_ms"]`. With one thread, CPU time is
    what the work cost even when other jobs share the cores (wall time then includes waiting)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    clock["cpu_ms"] = (time.process_time() - cpu) * 1e3
    return out, (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout")
    parser.add_argument("--variant", default="semanticodec-100-8192")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", default="10,25,50")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batch-steps", type=int, default=10)
    parser.add_argument("--output", default="benchmarks/results/semanticodec-vs-original-cpu-fp32.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = modalzoo.create_model(args.variant).eval()
    redraw_decoder(model)
    original = load_original("semanticodec", args.checkout, model)
    audio = procedural_audio(args.batch, args.seconds)
    result = {"variant": args.variant, "threads": args.threads, "audio_seconds": args.seconds, "machine": machine_info("cpu"), "rows": []}

    with torch.inference_mode():
        model.encode(input_values=audio[:1]), original.encode(audio[:1])  # warm-up
        a, b = {}, {}
        ours, ours_ms = once(lambda: model.encode(input_values=audio[:1]), a)
        theirs, theirs_ms = once(lambda: original.encode(audio[:1]), b)
        codes = ours.codes
        row = {"stage": "encode", "batch": 1, "modalzoo_ms": ours_ms, "original_ms": theirs_ms, "modalzoo_cpu_ms": a["cpu_ms"], "original_cpu_ms": b["cpu_ms"],
               "codes_match": float((theirs == codes).float().mean())}
        result["rows"].append(row)
        print(row, flush=True)

        decode = lambda c, steps, seed: model.decode(c, num_steps=steps, generator=torch.Generator().manual_seed(seed)).values

        def decode_original(c, steps, seed):
            torch.manual_seed(seed)
            return original.decode(c, num_steps=steps)

        decode(codes, 1, 0), decode_original(codes, 1, 0)  # warm-up
        for steps in [int(s) for s in args.steps.split(",")]:
            ours_values, ours_ms = once(lambda: decode(codes, steps, 0), a)
            theirs_values, theirs_ms = once(lambda: decode_original(codes, steps, 0), b)
            row = {"stage": f"decode {steps} steps", "batch": 1, "modalzoo_ms": ours_ms, "original_ms": theirs_ms,
                   "modalzoo_cpu_ms": a["cpu_ms"], "original_cpu_ms": b["cpu_ms"],
                   "max_abs_diff": float((ours_values - theirs_values).abs().max()), "max_abs": float(theirs_values.abs().max())}
            result["rows"].append(row)
            print(row, flush=True)

        batch_codes = model.encode(input_values=audio).codes
        steps = args.batch_steps
        _, ours_ms = once(lambda: decode(batch_codes, steps, 0), a)
        _, theirs_ms = once(lambda: decode_original(batch_codes, steps, 0), b)
        row = {"stage": f"decode {steps} steps", "batch": args.batch, "modalzoo_ms": ours_ms, "original_ms": theirs_ms,
               "modalzoo_cpu_ms": a["cpu_ms"], "original_cpu_ms": b["cpu_ms"]}
        result["rows"].append(row)
        print(row, flush=True)

    for row in result["rows"]:
        row["ratio"] = row["original_ms"] / row["modalzoo_ms"]
        row["cpu_ratio"] = row["original_cpu_ms"] / row["modalzoo_cpu_ms"]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))
    print("| stage | batch | modalzoo wall ms | original wall ms | ratio | modalzoo CPU ms | original CPU ms | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(f"| {r['stage']} | {r['batch']} | {r['modalzoo_ms']:,.0f} | {r['original_ms']:,.0f} | {r['ratio']:.2f}x | "
              f"{r['modalzoo_cpu_ms']:,.0f} | {r['original_cpu_ms']:,.0f} | {r['cpu_ratio']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
