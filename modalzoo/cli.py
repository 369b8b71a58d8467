"""`modalzoo` command line: list, info, encode, decode, convert, train, eval, bench."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .hub.cards import model_facts


def load_model_and_processor(spec: str):
    """`spec` is a registered variant name (random init), a local folder or a Hub repo id."""
    from .registry import VARIANTS, create_model, create_processor

    if spec in VARIANTS:
        model = create_model(spec)
        return model, create_processor(model.config)
    from .hub.pull import from_pretrained  # Hub errors that name the missing repo / file / token

    model = from_pretrained(spec).eval()
    return model, load_processor(spec, model)


def load_processor(spec: str, model):
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    from .registry import create_processor

    auto = AutoImageProcessor if model.modality == "image" else AutoFeatureExtractor
    try:
        return auto.from_pretrained(spec)
    except OSError:
        # A converted folder without a processor file: the config fully determines it.
        return create_processor(model.config)


def cmd_list(args) -> int:
    from .registry import list_models

    rows = list_models(family=args.family, modality=args.modality)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':32} {'modality':8} {'codebooks':22} {'rate/tokens':>12}  description"
    print(header)
    print("-" * len(header))
    for row in rows:
        sizes = "x".join(str(s) for s in row["codebook_sizes"])
        if len(sizes) > 22:
            sizes = f"{len(row['codebook_sizes'])}x{row['codebook_sizes'][0]}"
        rate = f"{row['token_rate']:g}/s" if row["token_rate"] else f"{row['max_tokens']} tok"
        print(f"{row['name']:32} {row['modality']:8} {sizes:22} {rate:>12}  {row['description']}")
    return 0


def cmd_info(args) -> int:
    model, _ = load_model_and_processor(args.model)
    facts = model_facts(model)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:16} {value}")
    return 0


def cmd_encode(args) -> int:
    from .file_io import read_item

    model, processor = load_model_and_processor(args.model)
    inputs = processor(**read_item(args.file, model.modality), return_tensors="pt")
    with torch.inference_mode():
        encoded = model.encode(**inputs)
    if encoded.codes is None:
        raise SystemExit(f"{args.model} is a continuous tokenizer: it returns latents, not codes")
    codes = encoded.codes[0]
    if encoded.codes_mask is not None:
        codes = codes[:, encoded.codes_mask[0].bool()]
    output = Path(args.output or Path(args.file).with_suffix(".codes.npy"))
    np.save(output, codes.cpu().numpy().astype(np.int64))
    print(f"{args.file}: codes {tuple(codes.shape)} (codebooks x positions) -> {output}")
    return 0


def cmd_decode(args) -> int:
    from .file_io import write_item

    model, processor = load_model_and_processor(args.model)
    codes = np.load(args.codes)
    if codes.ndim != 2:
        raise SystemExit(f"{args.codes} must hold codes [codebooks, positions], got shape {codes.shape}")
    with torch.inference_mode():
        decoded = model.decode(torch.from_numpy(codes.astype(np.int64))[None])
    path = write_item(processor, decoded.values, decoded.values_mask, args.output, model.modality)
    print(f"{args.codes}: decoded -> {path}")
    return 0


def cmd_convert(args) -> int:
    try:
        converter = importlib.import_module(f"modalzoo.conversion.{args.family}")
    except ModuleNotFoundError:
        raise SystemExit(f"no converter for family {args.family!r}") from None
    options = {"variant": args.variant, "config": args.config}
    if args.trust_pickle:
        options["trust_pickle"] = True
    summary = converter.convert_checkpoint(args.checkpoint, args.output, **options)
    print(f"converted {args.checkpoint} -> {args.output}")
    print(f"  keys mapped: {summary['mapped']}")
    for key, reason in sorted(summary.get("dropped", {}).items()):
        print(f"  dropped {key}: {reason}")
    if summary.get("missing"):
        print(f"  missing: {', '.join(summary['missing'])}")
    from .hub import load_folder, push_model, render_model_card

    model, processor = load_folder(args.output)
    render_model_card(model, args.push_to_hub).save(Path(args.output) / "README.md")
    if args.push_to_hub:
        commit = push_model(model, args.push_to_hub, processor=processor)
        print(f"pushed {args.output} to {args.push_to_hub} at commit {commit.oid[:12]}: {commit.commit_url}")
    return 0


def cmd_push(args) -> int:
    from .hub import push_model

    commit = push_model(
        args.folder, args.repo, metrics=args.metrics, with_code=args.with_code, card=not args.no_card,
        private=True if args.private else None, revision=args.revision, commit_message=args.commit_message,
    )
    print(f"pushed {args.folder} to {args.repo} at commit {commit.oid[:12]}: {commit.commit_url}")
    return 0


def cmd_train(args) -> int:
    from .training import load_recipe, train

    config = load_recipe(args.recipe, args.overrides)
    result = train(config, resume=not args.no_resume, push_to_hub=args.push_to_hub)
    if result["final_dir"] is not None:
        print(f"trained {config.model.name} for {config.steps} steps -> {result['final_dir']}")
        if args.push_to_hub:
            print(f"pushed to {args.push_to_hub}")
    return 0


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _options(pairs: list[str] | None) -> dict:
    """KEY=VALUE pairs; values are read as JSON when they parse (numbers, true, null)."""
    options = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cmd_eval(args) -> int:
    import re

    from .evaluation import evaluate, format_table, iter_items, protocol_for

    model, processor = load_model_and_processor(args.model)
    protocol = protocol_for(model, batch_size=args.batch_size, max_seconds=args.max_seconds)
    items = iter_items(args.data, model.modality, split=args.split, max_items=args.max_items)
    result = evaluate(
        model, processor, items, protocol=protocol, metrics=_split(args.metrics) or None, device=args.device,
        encode_options=_options(args.encode_option), decode_options=_options(args.decode_option),
        model_name=args.model, dataset=args.data, split=args.split,
    )
    print(format_table(result))
    slug = "-".join(re.sub(r"[^A-Za-z0-9]+", "_", str(part)).strip("_") for part in (Path(args.model).name, Path(args.data).name))
    output = Path(args.output or Path("eval_results") / f"{slug}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {output}")
    return 0


def cmd_demo(args) -> int:
    from .demo import format_report, run_demo

    print(format_report(run_demo(args.output)))
    return 0


def cmd_bench(args) -> int:
    from .evaluation.benchmark import BenchSettings, default_models, render_markdown, run_benchmark, write_outputs

    models = _split(args.models) or default_models(_split(args.families), tiny=args.smoke or args.tiny)
    settings = {"device": args.device, "dtype": args.dtype, "compile": args.compile, "threads": args.threads}
    settings["encode_options"] = _options(args.encode_option)
    settings["decode_options"] = _options(args.decode_option)
    settings.update({key: value for key, value in (("repeats", args.repeats), ("warmup", args.warmup), ("audio_seconds", args.audio_seconds)) if value is not None})
    if args.batch:
        settings["batch_sizes"] = tuple(int(size) for size in _split(args.batch))
    settings = BenchSettings.for_smoke(**settings) if args.smoke else BenchSettings(**settings)
    result = run_benchmark(
        models, settings, loader=load_model_and_processor, compare_original=args.compare_original,
        original_plugin=args.original_plugin, log=lambda message: print(message, file=sys.stderr),
    )
    paths = write_outputs(result, args.output_dir)
    print(render_markdown(result))
    print("-> " + ", ".join(str(path) for path in paths.values()))
    return 0 if any("error" not in row for row in result["rows"]) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modalzoo", description="Multimodal tokenizers: list, inspect, encode, decode, convert.")
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="registered families and variants")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--family")
    listing.add_argument("--modality")
    listing.set_defaults(run=cmd_list)

    info = commands.add_parser("info", help="facts about a model (variant name, folder or Hub repo)")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    encode = commands.add_parser("encode", help="file -> codes.npy")
    encode.add_argument("file")
    encode.add_argument("--model", required=True)
    encode.add_argument("--output")
    encode.set_defaults(run=cmd_encode)

    decode = commands.add_parser("decode", help="codes.npy -> file")
    decode.add_argument("codes")
    decode.add_argument("--model", required=True)
    decode.add_argument("--output", required=True)
    decode.set_defaults(run=cmd_decode)

    convert = commands.add_parser("convert", help="original checkpoint -> Hub-ready folder")
    convert.add_argument("family")
    convert.add_argument("--checkpoint", required=True)
    convert.add_argument("--config")
    convert.add_argument("--output", required=True)
    convert.add_argument("--variant")
    convert.add_argument("--trust-pickle", action="store_true", help="allow pickled objects outside the allow-list (runs their code)")
    convert.add_argument("--push-to-hub", metavar="REPO", help="then publish the converted folder to this Hub repo")
    convert.set_defaults(run=cmd_convert)

    push = commands.add_parser("push", help="saved model folder -> Hub repo: weights, processor and card in one commit")
    push.add_argument("folder")
    push.add_argument("repo")
    push.add_argument("--metrics", help="evaluation JSON (from `modalzoo eval`) for the card's metrics and model-index")
    push.add_argument("--with-code", action="store_true", help="also upload the family's code (trust_remote_code users)")
    push.add_argument("--no-card", action="store_true", help="leave README.md out")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (created when missing)")
    push.add_argument("--commit-message")
    push.set_defaults(run=cmd_push)

    train = commands.add_parser(
        "train",
        help="train a tokenizer from a recipe (multi-process: accelerate launch -m modalzoo.cli train ...)",
    )
    train.add_argument("recipe", help="recipe YAML, or the name of a bundled recipe (training/recipes)")
    train.add_argument("overrides", nargs="*", help="recipe changes as key=value, e.g. optim.lr=3e-4 data.batch_size=4")
    train.add_argument("--push-to-hub", metavar="REPO", help="push the final model folder to this Hub repo")
    train.add_argument("--no-resume", action="store_true", help="start afresh even if output_dir holds checkpoints")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="reconstruction metrics of a model on a folder or dataset -> table + JSON")
    evaluate.add_argument("--model", required=True, help="variant name, folder or Hub repo")
    evaluate.add_argument("--data", required=True, help="folder or file of images / audio, a Hub dataset id, or BUILDER:DIR (imagefolder:DIR)")
    evaluate.add_argument("--split", help="dataset split (default: test, else validation, else train)")
    evaluate.add_argument("--max-items", type=int)
    evaluate.add_argument("--metrics", help="comma-separated subset (default: every metric of the modality)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--batch-size", type=int, help="override the protocol's batch size")
    evaluate.add_argument("--max-seconds", type=float, help="audio: crop items to this length (overrides the protocol)")
    evaluate.add_argument("--encode-option", action="append", metavar="KEY=VALUE", help="family option for encode, e.g. num_tokens=64")
    evaluate.add_argument("--decode-option", action="append", metavar="KEY=VALUE")
    evaluate.add_argument("--output", help="result JSON (default: eval_results/<model>-<data>.json)")
    evaluate.set_defaults(run=cmd_eval)

    demo = commands.add_parser("demo", help="the shipped default tokenizers on a bundled photo and speech clip (offline)")
    demo.add_argument("--output", default="modalzoo_demo", help="folder for reconstructions, figure and summary")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="encode/decode latency, throughput and memory across families")
    bench.add_argument("--families", help="comma-separated families (default: all)")
    bench.add_argument("--models", help="comma-separated variants / folders, instead of one per family")
    bench.add_argument("--tiny", action="store_true", help="each family's -tiny variant instead of its first release")
    bench.add_argument("--smoke", action="store_true", help="tiny variants, short inputs, 2 repeats: checks the path, measures nothing")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    bench.add_argument("--compile", action="store_true", help="torch.compile encode and decode")
    bench.add_argument("--batch", help="comma-separated batch sizes (default 1,16)")
    bench.add_argument("--repeats", type=int)
    bench.add_argument("--warmup", type=int)
    bench.add_argument("--audio-seconds", type=float, help="length of the audio input (default 5)")
    bench.add_argument("--threads", type=int, help="torch intra-op threads (default: one per core)")
    bench.add_argument("--encode-option", action="append", metavar="KEY=VALUE")
    bench.add_argument("--decode-option", action="append", metavar="KEY=VALUE", help="e.g. chunk_length_s=30 for long audio")
    bench.add_argument("--compare-original", metavar="PATH", help="checkout of the original repository to time against")
    bench.add_argument("--original-plugin", metavar="FILE", help="plugin file instead of modalzoo.evaluation.originals.<family>")
    bench.add_argument("--output-dir", default="benchmarks/results")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as transformers_logging

    args = build_parser().parse_args(argv)
    transformers_logging.disable_progress_bar()
    try:
        return args.run(args)
    except (ValueError, OSError, KeyError) as error:
        print(f"modalzoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
