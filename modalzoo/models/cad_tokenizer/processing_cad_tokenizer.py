"""CAD-Tokenizer processor: CAD sequences (objects, CADFusion strings or DeepCAD vectors) <->
the model's token ids, validated on the way in; decoded ids back to `CADSequence` objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from ...data.cad.cadfusion import read_cadfusion, write_cadfusion
from ...data.cad.deepcad import read_deepcad
from ...data.cad.sequence import CADSequence, Curve, Extrude, Face, Loop, Sketch
from ...data.cad.validation import CADValidationError, validate
from .grammar import (
    AXIS_BASE,
    CURVE_TOKENS,
    CURVE_VALUES,
    EOS,
    EXTRUDE_END,
    EXTRUDE_LAYOUT,
    FACE_END,
    LOOP_END,
    OPERATION_TOKENS,
    PAD,
    SKETCH_END,
    VALUE_BASE,
    Grammar,
    State,
    axis_token,
    value_token,
)

_CURVE_IDS = {name: token for token, name in CURVE_TOKENS.items()}
_OPERATION_IDS = {name: token for token, name in OPERATION_TOKENS.items()}


def sequence_to_tokens(sequence: CADSequence) -> list[int]:
    """A sequence -> token ids ending with EOS (the grammar in `grammar.py`)."""
    tokens = []
    for sketch, extrude in sequence.pairs:
        for face in sketch.faces:
            for loop in face.loops:
                for curve in loop.curves:
                    tokens += [_CURVE_IDS[curve.kind], *map(value_token, curve.values)]
                tokens.append(LOOP_END)
            tokens.append(FACE_END)
        tokens += [SKETCH_END, _OPERATION_IDS[extrude.operation]]
        numbers = extrude.values
        tokens += [axis_token(v) if kind == "a" else value_token(v) for kind, v in zip(EXTRUDE_LAYOUT, numbers)]
        tokens.append(EXTRUDE_END)
    return tokens + [EOS]


def tokens_to_sequence(tokens, bits: int) -> CADSequence:
    """Token ids (up to EOS, PAD ignored) -> a sequence; `CADValidationError` names the first
    token that breaks the grammar. Geometry is not checked here (see `validate`)."""
    grammar = Grammar(bits)
    ids = [int(t) for t in tokens if int(t) != PAD]
    state = State()
    for index, token in enumerate(ids):
        state = grammar.step(state, token)
        if state is None:
            raise CADValidationError(f"token {index}", f"token id {token} breaks the CAD grammar")
        if state.phase == "done":
            ids = ids[: index + 1]
            break
    else:
        raise CADValidationError("", "unterminated token sequence (no EOS after a complete extrusion)")
    pairs, faces, loops, curves = [], [], [], []
    position = 0
    values = lambda count: [ids[position + 1 + k] - VALUE_BASE for k in range(count)]  # noqa: E731
    while ids[position] != EOS:
        token = ids[position]
        if token in CURVE_TOKENS:
            numbers = values(CURVE_VALUES[token])
            curves.append(Curve(CURVE_TOKENS[token], tuple(zip(numbers[0::2], numbers[1::2]))))
            position += 1 + len(numbers)
            continue
        if token == LOOP_END:
            loops.append(Loop(curves))
            curves = []
        elif token == FACE_END:
            faces.append(Face(loops))
            loops = []
        elif token == SKETCH_END:
            sketch = Sketch(faces)
            faces = []
        elif token in OPERATION_TOKENS:
            raw = ids[position + 1 : position + 1 + len(EXTRUDE_LAYOUT)]
            numbers = [r - AXIS_BASE - 1 if kind == "a" else r - VALUE_BASE for kind, r in zip(EXTRUDE_LAYOUT, raw)]
            pairs.append((sketch, Extrude(OPERATION_TOKENS[token], numbers[0:2], numbers[2:5], numbers[5:14], numbers[14], numbers[15:17])))
            position += len(EXTRUDE_LAYOUT) + 1
            assert ids[position] == EXTRUDE_END  # guaranteed by the grammar
        position += 1
    return CADSequence(pairs, bits=bits)


class CADTokenizerProcessor(FeatureExtractionMixin):
    """Accepts a `CADSequence`, a CADFusion string, a DeepCAD vector `[N, 17]` or a list of them;
    returns `cad_tokens` `[B, L]` (EOS-terminated, PAD=0 after) and `attention_mask` `[B, L]`."""

    model_input_names = ["cad_tokens", "attention_mask"]

    def __init__(self, bits: int = 6, max_sequence_length: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        self.max_sequence_length = int(max_sequence_length)

    @classmethod
    def from_model_config(cls, config) -> CADTokenizerProcessor:
        return cls(bits=config.bits, max_sequence_length=config.max_sequence_length)

    # ----- input -----------------------------------------------------------------------------------
    def to_sequence(self, item) -> CADSequence:
        if isinstance(item, CADSequence):
            if item.bits != self.bits:
                raise ValueError(f"expected a {self.bits}-bit sequence, got {item.bits} bits")
            validate(item)
            return item
        if isinstance(item, str):
            return read_cadfusion(item, bits=self.bits)
        if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 2:
            return read_deepcad(np.asarray(item), bits=self.bits)
        raise ValueError(
            f"expected a CADSequence, a CADFusion string or a DeepCAD vector [N, 17], got {type(item).__name__}"
        )

    def tokenize(self, item) -> list[int]:
        tokens = sequence_to_tokens(self.to_sequence(item))
        if len(tokens) > self.max_sequence_length:
            raise ValueError(f"the sequence has {len(tokens)} tokens; this model takes at most {self.max_sequence_length}")
        return tokens

    def _pad(self, token_lists: list[list[int]]) -> dict[str, torch.Tensor]:
        length = max(len(t) for t in token_lists)
        cad_tokens = torch.full((len(token_lists), length), PAD, dtype=torch.long)
        for index, tokens in enumerate(token_lists):
            cad_tokens[index, : len(tokens)] = torch.as_tensor(tokens)
        return {"cad_tokens": cad_tokens, "attention_mask": cad_tokens != PAD}

    def __call__(self, sequences, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        single = isinstance(sequences, (CADSequence, str)) or (isinstance(sequences, np.ndarray) and sequences.ndim == 2)
        items = [sequences] if single else list(sequences)
        if not items:
            raise ValueError("expected at least one CAD sequence, got an empty list")
        return BatchFeature(self._pad([self.tokenize(item) for item in items]), tensor_type=return_tensors)

    # ----- output ------------------------------------------------------------------------------------
    def postprocess(self, values: torch.Tensor, values_mask: torch.Tensor | None = None) -> list[CADSequence | None]:
        """Decoded ids `[B, L]` -> one `CADSequence` per item, or None where the ids do not parse
        (only possible without constrained decoding). Geometry is not checked: use `validate` or
        `modalzoo.data.cad.kernel.build`."""
        if values.ndim != 2:
            raise ValueError(f"expected token ids [B, L], got shape {tuple(values.shape)}")
        results = []
        for index, row in enumerate(values.detach().cpu()):
            ids = row[values_mask[index].cpu()] if values_mask is not None else row
            try:
                results.append(tokens_to_sequence(ids.tolist(), self.bits))
            except CADValidationError:
                results.append(None)
        return results

    # ----- training (modalzoo train, procedural:cad_sequences) ------------------------------------------------
    def training_item(self, value, rng: np.random.Generator | None) -> list[int]:
        return self.tokenize(value)

    def training_item_length(self, item: list[int]) -> int:
        return len(item)

    def collate_training_items(self, items: list[list[int]]) -> dict[str, torch.Tensor]:
        return self._pad(items)

    def save_training_samples(self, reference: torch.Tensor, reconstructions: torch.Tensor, folder) -> None:
        """`<i>.txt`: the reference and the reconstruction as CADFusion strings."""
        folder = Path(folder)
        references = self.postprocess(reference, reference != PAD)
        decoded = self.postprocess(reconstructions, reconstructions != PAD)
        for index, (original, reconstruction) in enumerate(zip(references, decoded)):
            text = "reference:\n" + (write_cadfusion(original) if original else "(unparseable)")
            text += "\nreconstruction:\n" + (write_cadfusion(reconstruction) if reconstruction else "(unparseable)")
            (folder / f"{index}.txt").write_text(text + "\n")


__all__ = ["CADTokenizerProcessor", "sequence_to_tokens", "tokens_to_sequence"]
