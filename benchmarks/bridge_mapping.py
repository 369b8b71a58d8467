"""Times 1,000,000 codes -> LLM token ids -> codes through the bridge (CPU).

    python benchmarks/bridge_mapping.py [--num-codes 1000000] [--num-codebooks 2] [--repeats 5]

The measurement itself is `modalzoo.bridge.benchmark.bench_bridge_mapping`.
"""

from __future__ import annotations

import argparse

from modalzoo.bridge.benchmark import bench_bridge_mapping


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-codes", type=int, default=1_000_000)
    parser.add_argument("--num-codebooks", type=int, default=2, help="1 or 2 (the reference codec used has 2)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = bench_bridge_mapping(args.num_codes, args.num_codebooks, repeats=args.repeats)
    print(f"{result['num_codes']:,} codes {result['shape']} on {result['threads']} CPU threads (best of {args.repeats}):")
    for key in ("layout_codes_to_ids_s", "layout_ids_to_codes_s", "spans_codes_to_ids_s", "spans_ids_to_codes_s", "round_trip_s"):
        print(f"  {key:<24} {result[key] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
