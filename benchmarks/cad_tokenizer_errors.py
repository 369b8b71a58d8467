"""Where CAD-Tokenizer's parameter errors are: teacher-forced next-token accuracy on held-out
sequences, split by the primitive a token belongs to (line / arc / circle / extrude) and by token
kind (type, axis, value); and how many distinct parameter tuples each curve kind takes in the
training stream, against the codebook size (one code per curve must carry them).

    python benchmarks/cad_tokenizer_errors.py [MODEL_DIR] [--items 100] [--stream-items 4000]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo.data.cad import cad_sequences_heldout
from modalzoo.data.cad.generator import cad_sequences
from modalzoo.models.cad_tokenizer.grammar import (
    AXIS_BASE, CURVE_TOKENS, CURVE_VALUES, EOS, EXTRUDE_END, FACE_END, LOOP_END, OPERATION_TOKENS, PAD, SKETCH_END,
    VALUE_BASE,
)

DEFAULT_MODEL = Path(modalzoo.__file__).parent / "pretrained" / "cad_tokenizer_small"
CLOSERS = (LOOP_END, FACE_END, SKETCH_END, EXTRUDE_END, EOS)


def token_groups(tokens: list[int]) -> list[str]:
    """'<primitive>:<kind>' per token: primitive line / arc / circle / extrude / structure."""
    groups, primitive = [], "structure"
    for token in tokens:
        if token in CURVE_TOKENS:
            primitive = CURVE_TOKENS[token]
        elif token in OPERATION_TOKENS:
            primitive = "extrude"
        elif token in CLOSERS:
            primitive = "structure"
        kind = "value" if token >= VALUE_BASE else "axis" if token >= AXIS_BASE else "type"
        groups.append(f"{primitive}:{kind}")
    return groups


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--stream-items", type=int, default=4000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoFeatureExtractor.from_pretrained(args.model)
    inputs = processor([cad_sequences_heldout(index) for index in range(args.items)])
    with torch.no_grad():
        predicted = model(**inputs).values.argmax(-1)
    counts = collections.defaultdict(lambda: [0, 0])
    for tokens, guesses in zip(inputs["cad_tokens"].tolist(), predicted.tolist()):
        length = tokens.index(PAD) if PAD in tokens else len(tokens)
        for group, token, guess in zip(token_groups(tokens[:length]), tokens, guesses):
            counts[group][0] += int(token == guess)
            counts[group][1] += 1
    print(f"teacher-forced accuracy, {args.items} held-out sequences")
    for group, (right, total) in sorted(counts.items()):
        print(f"  {group:16s} {right / total:.3f} of {total}")

    tuples = {name: collections.Counter() for name in CURVE_TOKENS.values()}
    for index in range(args.stream_items):
        tokens = processor([cad_sequences(index, np.random.default_rng([0x5EED, index]))])["cad_tokens"][0].tolist()
        for position, token in enumerate(tokens):
            if token in CURVE_TOKENS:
                tuples[CURVE_TOKENS[token]][tuple(tokens[position + 1 : position + 1 + CURVE_VALUES[token]])] += 1
    size = model.config.codebook_size
    print(f"curve parameter tuples in {args.stream_items} training sequences (codebook {size})")
    for name, counter in tuples.items():
        total = sum(counter.values())
        once = sum(1 for count in counter.values() if count == 1)
        top = sum(count for _, count in counter.most_common(size))
        print(f"  {name:7s} {total} curves, {len(counter)} distinct, {once} seen once, the {size} most common cover {top / max(total, 1):.3f}")


if __name__ == "__main__":
    main()
