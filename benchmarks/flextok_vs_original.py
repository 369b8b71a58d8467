"""FlexTok speed against the original (apple/ml-flextok), through `modalzoo bench`'s machinery.

    python benchmarks/flextok_vs_original.py /path/to/ml-flextok [--variant flextok-d12-d12-in1k]

Builds the variant at random init (the zero-initialised heads and adaLN layers get small random
values so that codes and velocities are not trivially constant), runs
`modalzoo.evaluation.benchmark.run_benchmark` with the FlexTok `--compare-original` plugin twice
(decode with `--steps` and with one step), and prints encode time, decode time for the full
sampler and per step (the difference of the two decode times over `steps - 1`, so the VAE decode
and the fixed costs cancel), each with the original / modalzoo ratio (> 1: modalzoo is faster).
The original needs `hydra-core` and `mup` importable. Results also go to `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import modalzoo
from modalzoo.evaluation.benchmark import BenchSettings, machine_info, run_benchmark, write_outputs


def loader_for(variant: str, steps: int):
    def load(spec: str):
        torch.manual_seed(0)
        model = modalzoo.create_model(variant, sampling_num_steps=steps, vae_sample_posterior=False)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if not name.startswith("vae.") and torch.all(parameter == 0):
                    parameter.normal_(0.0, 0.02)
        return model, modalzoo.create_processor(model.config)

    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="clone of https://github.com/apple/ml-flextok")
    parser.add_argument("--variant", default="flextok-d12-d12-in1k")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--output-dir", default="benchmarks/results/flextok")
    args = parser.parse_args(argv)

    settings = BenchSettings(device=args.device, batch_sizes=(args.batch,), repeats=args.repeats, warmup=0,
                             warmup_seconds=0.0, threads=args.threads)
    results = {}
    for steps in (args.steps, 1):
        result = run_benchmark([f"{args.variant} ({steps} steps)"], settings, loader=loader_for(args.variant, steps),
                               compare_original=args.checkout)
        row = result["rows"][0]
        if "error" in row:
            raise SystemExit(f"{steps} steps: {row['error']}")
        results[steps] = row
        write_outputs(result, Path(args.output_dir) / f"steps{steps}")

    full, one = results[args.steps], results[1]

    def median(row, side, what):
        stats = row[f"{what}_ms"] if side == "modalzoo" else row["original"][f"{what}_ms"]
        return stats["median"]

    table = {}
    for side in ("modalzoo", "original"):
        table[side] = {
            "encode_ms": median(full, side, "encode"),
            f"decode_{args.steps}_steps_ms": median(full, side, "decode"),
            "decode_1_step_ms": median(one, side, "decode"),
            "decode_per_step_ms": (median(full, side, "decode") - median(one, side, "decode")) / (args.steps - 1),
        }
    ratios = {key: table["original"][key] / table["modalzoo"][key] for key in table["modalzoo"]}
    summary = {
        "variant": args.variant,
        "batch": args.batch,
        "device": args.device,
        "machine": machine_info(args.device),
        "codes_match": full["original"]["codes_match"],
        "modalzoo": table["modalzoo"],
        "original": table["original"],
        "ratio_original_over_modalzoo": ratios,
    }
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    config = modalzoo.create_config(args.variant)
    print(f"{args.variant}, batch {args.batch}, {args.device}, guidance {config.sampling_guidance_scale} "
          f"({'APG' if config.sampling_norm_guidance else 'CFG'}):")
    print(f"{'':28} {'modalzoo ms':>12} {'original ms':>12} {'ratio':>7}")
    for key in table["modalzoo"]:
        print(f"{key:28} {table['modalzoo'][key]:12.1f} {table['original'][key]:12.1f} {ratios[key]:6.2f}x")
    print(f"codes match: {summary['codes_match']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
