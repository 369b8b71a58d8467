"""CAD-Tokenizer reconstruction on held-out procedural sequences, built with the CAD kernel.

    python benchmarks/cad_tokenizer_heldout.py modalzoo/pretrained/cad_tokenizer_small \
        --items 200 --output benchmarks/results/cad_tokenizer_small_heldout.json [--unconstrained]

Held-out items are `modalzoo.data.cad.cad_sequences_heldout(0 .. items-1)`, a seed stream the
training stream (`cad_sequences`) never uses. Each is encoded, decoded greedily with the grammar
automaton (and, with `--unconstrained`, also without it), and scored by
`modalzoo.evaluation.cad_metrics.CADMetrics` with the build123d kernel: exact parameter
accuracy, sketch / extrusion F1, invalid ratio (validator and kernel), Chamfer distance.
One CPU thread; timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def evaluate(model_dir: str, items: int, batch_size: int, constrained: bool = True) -> dict:
    from transformers import AutoFeatureExtractor, AutoModel

    import modalzoo  # noqa: F401  (registers the family)
    from modalzoo.data.cad import cad_sequences_heldout
    from modalzoo.evaluation.cad_metrics import CADMetrics

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoFeatureExtractor.from_pretrained(model_dir)
    references = [cad_sequences_heldout(index) for index in range(items)]
    meter = CADMetrics(kernel=True)
    encode_s = decode_s = 0.0
    codes_per_item = []
    for start in range(0, items, batch_size):
        chunk = references[start : start + batch_size]
        inputs = processor(chunk)
        began = time.perf_counter()
        encoded = model.encode(**inputs)
        encode_s += time.perf_counter() - began
        began = time.perf_counter()
        decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask, constrained=constrained)
        decode_s += time.perf_counter() - began
        mask = encoded.codes_mask if encoded.codes_mask is not None else torch.ones_like(encoded.codes[:, 0], dtype=torch.bool)
        codes_per_item += mask.sum(1).tolist()
        for reference, sequence in zip(chunk, processor.postprocess(decoded.values, decoded.values_mask)):
            meter.update(reference, sequence)
    began = time.perf_counter()
    metrics = meter.compute()
    return {
        "metrics": metrics,
        "constrained": constrained,
        "items": items,
        "codes_per_item": sum(codes_per_item) / len(codes_per_item),
        "encode_seconds_per_item": encode_s / items,
        "decode_seconds_per_item": decode_s / items,
        "scoring_seconds": time.perf_counter() - began,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--unconstrained", action="store_true", help="also decode without the grammar automaton")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {"model": args.model_dir, "dataset": "procedural:cad_sequences_heldout", "runs": []}
    for constrained in (True, False) if args.unconstrained else (True,):
        run = evaluate(args.model_dir, args.items, args.batch_size, constrained)
        results["runs"].append(run)
        print(json.dumps(run, indent=2), flush=True)
    results["environment"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": 1,
                              "date": time.strftime("%Y-%m-%d")}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
