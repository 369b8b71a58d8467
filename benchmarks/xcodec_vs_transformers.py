"""modalzoo X-Codec against plain transformers `XcodecModel`: same weights, same inputs, same run.

    python benchmarks/xcodec_vs_transformers.py [--model xcodec-hubert-librispeech] [--seconds 4]
        [--threads N] [--device cpu|cuda] [--repeats 5] [--output benchmarks/results/xcodec_vs_transformers.json]

Three cases, encode and decode each:
* batch 1: modalzoo's path against `XcodecModel.encode` / `.decode` (must not be slower);
* batch 8, equal lengths: one call each;
* batch 8, lengths from 40 % to 100 % of `--seconds`: modalzoo's masked batch (one call, every item
  as if alone) against the per-item loop a transformers user needs, since `XcodecModel` takes no
  padding mask (the `modalzoo bench --compare-original` plugin's baseline).
Calls alternate (modalzoo, plain, modalzoo, ...) and the ratio is the median of the per-pair
plain / modalzoo latencies: above 1 means modalzoo is faster. The codes of both sides are compared
too. `modalzoo bench --models xcodec-hubert-librispeech --compare-original .`
gives the equal-length rows in the shared benchmark table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from modalzoo import create_model, create_processor
from modalzoo.evaluation.benchmark import machine_info
from modalzoo.evaluation.originals.xcodec_tokenizer import load_original


def _clips(seconds: float, batch: int, rate: int, ragged: bool) -> list[np.ndarray]:
    generator = np.random.default_rng(0)
    clips = []
    for index in range(batch):
        share = 1.0 if not ragged or batch == 1 else 0.4 + 0.6 * index / (batch - 1)
        samples = int(seconds * share * rate)
        time_axis = np.arange(samples) / rate
        clip = 0.3 * np.sin(2 * np.pi * (180 + 20 * index) * time_axis) + 0.05 * generator.standard_normal(samples)
        clips.append(clip.astype(np.float32))
    return clips


def paired(ours, plain, *, repeats: int, warmup: int, synchronize) -> dict:
    """Alternates the two calls and returns both medians and the median of the per-pair ratios
    plain / ours: a busy machine's slow drifts then hit both sides of each pair alike."""

    def once(fn) -> float:
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        return (time.perf_counter() - start) * 1e3

    for _ in range(warmup):
        ours(), plain()
    pairs = [(once(ours), once(plain)) for _ in range(repeats)]
    return {
        "ms": statistics.median(a for a, _ in pairs),
        "plain_ms": statistics.median(b for _, b in pairs),
        "ratio": statistics.median(b / a for a, b in pairs),
    }


def run(model_name: str, seconds: float, device: str, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name).to(device).eval()
    processor = create_processor(model.config)
    plain = load_original(Path("."), model)
    synchronize = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)

    rows = []
    for case, batch, ragged in (("batch 1", 1, False), ("batch 8, equal lengths", 8, False), ("batch 8, different lengths", 8, True)):
        inputs = processor(_clips(seconds, batch, processor.sampling_rate, ragged), sampling_rate=processor.sampling_rate)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.inference_mode():
            ours = model.encode(**inputs)
            theirs = plain.encode(**inputs)
            mask = ours.codes_mask
            agree = float((ours.codes == theirs)[mask[:, None].expand_as(ours.codes)].float().mean())
            encode = paired(lambda: model.encode(**inputs), lambda: plain.encode(**inputs), repeats=repeats, warmup=warmup, synchronize=synchronize)
            decode = paired(
                lambda: model.decode(ours.codes, codes_mask=mask), lambda: plain.decode(ours.codes, codes_mask=mask),
                repeats=repeats, warmup=warmup, synchronize=synchronize,
            )
        row = {"case": case, "batch": batch, "encode": encode, "decode": decode, "codes_agree": agree}
        rows.append(row)
        print(
            f"{case:28} encode {encode['ms']:9.1f} ms vs {encode['plain_ms']:9.1f} ms (x{encode['ratio']:.2f})   "
            f"decode {decode['ms']:9.1f} ms vs {decode['plain_ms']:9.1f} ms (x{decode['ratio']:.2f})   codes agree {agree:.4f}",
            flush=True,
        )
    return {"model": model_name, "audio_seconds": seconds, "device": device, "repeats": repeats, "rows": rows, "machine": machine_info(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xcodec-hubert-librispeech")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/xcodec_vs_transformers.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = run(args.model, args.seconds, args.device, args.repeats, args.warmup)
    result["machine"]["load_average_1m_at_start"] = load_at_start
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print(f"-> {output}")


if __name__ == "__main__":
    main()
