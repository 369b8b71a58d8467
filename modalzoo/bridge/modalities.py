"""What the bridge knows about each modality tokenizer, and what it gives back.

* `infer_span_kind` reads, from the ModalTokenizer contract alone, whether a model's positions
  are a 2-D grid, a 1-D token sequence or audio frames;
* `ModalityEntry` is one modality tokenizer as stored in the bridge config;
* `DecodedSpan` / `DecodedModalities` are what `MultimodalTokenizer.decode_modalities` returns;
* `named_models` / `load_modality` turn the user's `{name: model | path | repo id | variant}`
  into loaded models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModel

from ..modeling_utils import ModalTokenizer
from ..registry import VARIANTS, create_model
from .mapping import CodeBlockLayout

AUDIO_MODALITIES = ("audio", "speech")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def infer_span_kind(model: ModalTokenizer) -> tuple[str, tuple[int, int] | None]:
    """Reads the layout of a model's positions from the contract: audio-like streams (a
    `token_rate`) are "frames"; a model whose `grid_size` (int or (H, W)) covers exactly its
    `max_tokens` positions is a "grid"; anything else is a 1-D "sequence"."""
    if model.token_rate is not None or model.modality in AUDIO_MODALITIES:
        return "frames", None
    grid = getattr(model, "grid_size", None)
    if grid is not None:
        height, width = (int(grid), int(grid)) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
        if model.max_tokens is not None and height * width == model.max_tokens:
            return "grid", (height, width)
    return "sequence", None


@dataclass
class ModalityEntry:
    """One modality tokenizer inside a bridge, as stored in `bridge_config["modalities"]`."""

    name: str
    modality: str
    model_type: str
    kind: str
    codebook_sizes: list[int]
    code_start: int
    begin_token: str
    end_token: str
    begin_id: int
    end_id: int
    placeholder: str
    grid: list[int] | None = None
    token_rate: float | None = None
    max_tokens: int | None = None
    source: str | None = None
    subfolder: str | None = None
    encode_kwargs: dict[str, Any] = field(default_factory=dict)

    def code_token(self, codebook: int, code: int) -> str:
        return f"<|{self.name}_{codebook}_{code}|>"

    def code_tokens(self) -> list[str]:
        return [self.code_token(q, code) for q, size in enumerate(self.codebook_sizes) for code in range(size)]

    @property
    def block(self) -> CodeBlockLayout:
        return CodeBlockLayout(tuple(self.codebook_sizes), self.code_start)


@dataclass
class DecodedSpan:
    """One modality span of a sequence. `codes` `[Q', T]` and `dims` are set when the span could be
    read; `value` (a PIL image, a numpy waveform at `sampling_rate`, ...) when it was also decoded;
    `error` says why not otherwise."""

    name: str
    modality: str
    kind: str
    start: int
    stop: int
    dims: tuple[int, ...] | None = None
    codes: torch.LongTensor | None = None
    value: Any = None
    sampling_rate: int | None = None
    token_rate: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def shape(self) -> dict[str, Any] | None:
        if self.dims is None:
            return None
        if self.kind == "grid":
            shape = {"grid": tuple(self.dims)}
        elif self.kind == "frames":
            shape = {"num_frames": self.dims[0]}
            if self.token_rate:
                shape["seconds"] = self.dims[0] / self.token_rate
        else:
            shape = {"num_tokens": self.dims[0]}
        shape["num_codebooks"] = int(self.codes.shape[0])
        return shape


@dataclass
class DecodedModalities:
    """What `decode_modalities` returns for one sequence: every span in order (readable or not),
    plus the decoded values by modality."""

    spans: list[DecodedSpan]

    def _values(self, modalities: Sequence[str]) -> list:
        return [span.value for span in self.spans if span.modality in modalities and span.value is not None]

    @property
    def images(self) -> list:
        return self._values(("image",))

    @property
    def audio(self) -> list:
        return self._values(AUDIO_MODALITIES)

    @property
    def shapes(self) -> list[dict[str, Any] | None]:
        return [span.shape for span in self.spans]

    @property
    def errors(self) -> list[str]:
        return [f"{span.name} span at ids [{span.start}, {span.stop}): {span.error}" for span in self.spans if span.error]


def named_models(modality_tokenizers) -> dict[str, tuple[ModalTokenizer, str | None]]:
    """Normalises the modality tokenizers argument to `{name: (model, source or None)}`."""
    if isinstance(modality_tokenizers, (ModalTokenizer, str, os.PathLike)):
        modality_tokenizers = [modality_tokenizers]
    if isinstance(modality_tokenizers, Mapping):
        named = [(str(name), spec) for name, spec in modality_tokenizers.items()]
    else:
        named = [(None, spec) for spec in modality_tokenizers]
    if not named:
        raise ValueError("give at least one modality tokenizer")
    models: dict[str, tuple[ModalTokenizer, str | None]] = {}
    for name, spec in named:
        model, source = load_modality(spec)
        name = name or model.modality
        if not _NAME.match(name):
            raise ValueError(f"modality tokenizer names must match {_NAME.pattern}, got {name!r}")
        if name in models:
            raise ValueError(f"two modality tokenizers are named {name!r}; pass a dict {{name: tokenizer}}")
        if not model.codebook_sizes:
            raise ValueError(f"{name!r} ({model.config.model_type}) is continuous: it has no codebooks to bridge")
        models[name] = (model, source)
    return models


def load_modality(spec) -> tuple[ModalTokenizer, str | None]:
    if isinstance(spec, ModalTokenizer):
        return spec, spec.config._name_or_path or None
    if isinstance(spec, (str, os.PathLike)):
        spec = str(spec)
        if spec in VARIANTS and not os.path.exists(spec):
            return create_model(spec), None
        model = AutoModel.from_pretrained(spec)
        if not isinstance(model, ModalTokenizer):
            raise TypeError(f"{spec!r} loads a {type(model).__name__}, not a modalzoo ModalTokenizer")
        return model.eval(), spec
    raise TypeError(f"expected a ModalTokenizer, a repo id, a path or a variant name, got {type(spec).__name__}")
