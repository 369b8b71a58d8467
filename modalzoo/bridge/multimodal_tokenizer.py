"""`MultimodalTokenizer`: one `AutoTokenizer` for text plus any modalzoo modality tokenizers.

It is the text tokenizer's own `tokenizer.json` pipeline (a `TokenizersBackend`) with extra
special tokens appended in one contiguous run:

* twelve shared header tokens: `<|num_0|>` ... `<|num_9|>`, `<|num_x|>` and `<|num_end|>`;
* per modality tokenizer `name`: `<|name_start|>`, `<|name_end|>`;
* per modality tokenizer and codebook q: `<|name_q_code|>` for every code, one contiguous id block
  per codebook, so codes <-> ids is an addition (`mapping.CodeBlockLayout`).

An item becomes `<|image_start|> 8 <|num_x|> 8 <|num_end|> codes... <|image_end|>`: the header
spells the grid size of 2-D codes, the token count of 1-D (possibly flexible-length) codes, or the
frame count of audio, whose codebooks are interleaved frame-major. Everything needed to read ids
back (layouts, ids, where the modality tokenizers' weights live) is stored as `bridge_config` in
`tokenizer_config.json`; `save_pretrained` embeds the modality tokenizers in subfolders by default
so a saved folder or Hub repo is self-contained, and they are loaded lazily on first use.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken
from transformers import AutoModel, AutoTokenizer, PreTrainedConfig, TokenizersBackend
from transformers.tokenization_utils_base import BatchEncoding, PaddingStrategy, TruncationStrategy

from ..modeling_utils import EncoderOutput, ModalTokenizer
from ..registry import FAMILIES
from .mapping import NumberTokens, SpanError, SpanLayout, SpanLocation, locate_spans
from .modalities import (
    AUDIO_MODALITIES,
    DecodedModalities,
    DecodedSpan,
    ModalityEntry,
    infer_span_kind,
    named_models,
)

BRIDGE_FORMAT = "modalzoo.bridge/1"
NUMBER_TOKENS = {"digits": [f"<|num_{digit}|>" for digit in range(10)], "times": "<|num_x|>", "end": "<|num_end|>"}
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision")


class MultimodalTokenizerConfig(PreTrainedConfig):
    """Only a key for `AutoTokenizer.register`; a bridge keeps its settings in `tokenizer_config.json`."""

    model_type = "modalzoo_multimodal_tokenizer"


class MultimodalTokenizer(TokenizersBackend):
    """A text tokenizer extended with the codes of one or more modalzoo tokenizers.

    Build one with `MultimodalTokenizer.from_tokenizers(text_tokenizer, {"image": ..., "audio": ...})`;
    reload a saved one with `AutoTokenizer.from_pretrained(folder_or_repo)` after `import modalzoo`.
    """

    def __init__(self, *args, bridge_config: dict | None = None, **kwargs):
        # A text tokenizer's config may name its own class, processor or remote code; none of it
        # applies to the bridge (an `auto_map` would even divert AutoTokenizer to remote code).
        kwargs.pop("auto_map", None)
        kwargs.pop("processor_class", None)
        super().__init__(*args, bridge_config=bridge_config, **kwargs)
        self._modality_models: dict[str, ModalTokenizer] = {}
        self._modality_processors: dict[str, Any] = {}
        self._weights_root: str | None = None
        self._weights_subfolder: str | None = None
        self._hub_kwargs: dict[str, Any] = {}
        self._entries: list[ModalityEntry] = []
        if bridge_config is not None:
            self._setup_bridge(bridge_config)

    # ----- construction and loading -----------------------------------------------------------------
    @classmethod
    def convert_to_native_format(cls, trust_remote_code=False, **kwargs):
        # The base class rebuilds subclasses with their own __init__ from bare vocab/merges, which
        # would drop the text tokenizer's normaliser, pre-tokeniser and decoder: load tokenizer.json.
        tokenizer_file = kwargs.get("tokenizer_file")
        if tokenizer_file is not None and os.path.isfile(tokenizer_file):
            return dict(kwargs)
        return super().convert_to_native_format(trust_remote_code=trust_remote_code, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs):
        tokenizer = super().from_pretrained(pretrained_model_name_or_path, *init_inputs, **kwargs)
        # Remember where the folder came from: embedded modality tokenizers load from there lazily.
        tokenizer._weights_root = str(pretrained_model_name_or_path)
        tokenizer._weights_subfolder = kwargs.get("subfolder") or None
        tokenizer._hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if kwargs.get(key) is not None}
        return tokenizer

    @classmethod
    def from_tokenizers(
        cls,
        text_tokenizer,
        modality_tokenizers,
        *,
        placeholders: Mapping[str, str] | None = None,
        encode_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> MultimodalTokenizer:
        """Builds a bridge.

        text_tokenizer: a transformers tokenizer with a `tokenizers` backend, or its repo id / path.
        modality_tokenizers: `{name: model}` or a list of models (named by their modality); each is
            a `ModalTokenizer`, a folder / Hub repo id (loaded with `AutoModel.from_pretrained`) or a
            registered variant name (built at random init, for tests and examples).
        placeholders: `{name: text}` marking where items go in `__call__` text (default `<name>`).
        encode_kwargs: `{name: {option: value}}` family options stored with the bridge and passed
            to every `encode` (e.g. `{"audio": {"num_quantizers": 1}}`).
        """
        text_source = None
        if isinstance(text_tokenizer, (str, os.PathLike)):
            text_source = str(text_tokenizer)
            text_tokenizer = AutoTokenizer.from_pretrained(text_source)
        if isinstance(text_tokenizer, MultimodalTokenizer):
            raise TypeError("text_tokenizer is already a MultimodalTokenizer")
        if not hasattr(getattr(text_tokenizer, "backend_tokenizer", None), "to_str"):
            raise TypeError(
                f"{type(text_tokenizer).__name__} has no `tokenizers` backend (tokenizer.json); "
                "load the text tokenizer with AutoTokenizer, which returns a TokenizersBackend in transformers 5"
            )
        text_source = text_source or (text_tokenizer.name_or_path or None)

        models = named_models(modality_tokenizers)
        placeholders = dict(placeholders or {})
        encode_kwargs = {name: dict(options) for name, options in (encode_kwargs or {}).items()}
        for mapping_name, mapping in (("placeholders", placeholders), ("encode_kwargs", encode_kwargs)):
            unknown = sorted(set(mapping) - set(models))
            if unknown:
                raise ValueError(f"{mapping_name} name unknown modality tokenizers {unknown}; known: {sorted(models)}")

        # Reload the text tokenizer through its own serialisation, so special tokens, chat template
        # and backend settings come along exactly as transformers saves them.
        with tempfile.TemporaryDirectory() as folder:
            text_tokenizer.save_pretrained(folder)
            tokenizer = cls.from_pretrained(folder)
        tokenizer._weights_root, tokenizer._weights_subfolder, tokenizer._hub_kwargs = None, None, {}
        tokenizer.name_or_path = ""

        entries = []
        for name, (model, source) in models.items():
            kind, grid = infer_span_kind(model)
            entries.append(
                ModalityEntry(
                    name=name, modality=model.modality, model_type=model.config.model_type, kind=kind,
                    codebook_sizes=[int(size) for size in model.codebook_sizes], code_start=-1,
                    begin_token=f"<|{name}_start|>", end_token=f"<|{name}_end|>", begin_id=-1, end_id=-1,
                    placeholder=placeholders.get(name, f"<{name}>"), grid=list(grid) if grid else None,
                    token_rate=model.token_rate, max_tokens=model.max_tokens, source=source,
                    encode_kwargs=encode_kwargs.get(name, {}),
                )
            )
        bridge_config = tokenizer._append_tokens(entries, text_source)
        tokenizer.init_kwargs["bridge_config"] = bridge_config
        tokenizer._setup_bridge(bridge_config)
        for name, (model, _) in models.items():
            tokenizer._modality_models[name] = model.eval()
        return tokenizer

    def _append_tokens(self, entries: list[ModalityEntry], text_source: str | None) -> dict:
        """Adds every bridge token in one `add_tokens` call and fills in the ids they got."""
        text_vocab_size = len(self)
        markers = NUMBER_TOKENS["digits"] + [NUMBER_TOKENS["times"], NUMBER_TOKENS["end"]]
        for entry in entries:
            markers += [entry.begin_token, entry.end_token]
        code_tokens = [token for entry in entries for token in entry.code_tokens()]
        new_tokens = markers + code_tokens

        vocab = self.get_vocab()
        clashes = [token for token in new_tokens if token in vocab]
        if clashes:
            raise ValueError(
                f"the text tokenizer already has tokens {clashes[:5]}; rename the modality tokenizers "
                "(the keys of `modality_tokenizers`) so their tokens are new"
            )
        if len(set(new_tokens)) != len(new_tokens):
            raise ValueError("modality tokenizer names must give distinct tokens")
        self.add_tokens([AddedToken(token, special=True, normalized=False) for token in new_tokens], special_tokens=True)

        ids = [self._tokenizer.token_to_id(token) for token in new_tokens]
        first = ids[0]
        if ids != list(range(first, first + len(new_tokens))):
            raise RuntimeError(
                "the text tokenizer did not give the new tokens contiguous ids; "
                "this bridge needs one contiguous id block per codebook"
            )
        by_token = dict(zip(markers, ids))
        next_code = first + len(markers)
        for entry in entries:
            entry.begin_id, entry.end_id = by_token[entry.begin_token], by_token[entry.end_token]
            entry.code_start = next_code
            next_code += sum(entry.codebook_sizes)
        return {
            "format": BRIDGE_FORMAT,
            "text_tokenizer": text_source,
            "text_vocab_size": text_vocab_size,
            "number_tokens": copy.deepcopy(NUMBER_TOKENS),
            "number_token_ids": {
                "digits": [by_token[token] for token in NUMBER_TOKENS["digits"]],
                "times": by_token[NUMBER_TOKENS["times"]],
                "end": by_token[NUMBER_TOKENS["end"]],
            },
            "modalities": [asdict(entry) for entry in entries],
        }

    def _setup_bridge(self, bridge_config: dict) -> None:
        if bridge_config.get("format") != BRIDGE_FORMAT:
            raise ValueError(f"unsupported bridge_config format {bridge_config.get('format')!r}; expected {BRIDGE_FORMAT!r}")
        self._entries = [ModalityEntry(**entry) for entry in bridge_config["modalities"]]
        ids = bridge_config["number_token_ids"]
        self._numbers = NumberTokens(tuple(ids["digits"]), ids["times"], ids["end"])
        self._layouts = [
            SpanLayout(entry.kind, entry.begin_id, entry.end_id, entry.block, self._numbers) for entry in self._entries
        ]
        self._check_vocabulary(bridge_config)
        placeholders = sorted((entry.placeholder for entry in self._entries), key=len, reverse=True)
        if len(set(placeholders)) != len(placeholders):
            raise ValueError(f"placeholders must be distinct, got {placeholders}")
        self._placeholder_pattern = re.compile("|".join(re.escape(placeholder) for placeholder in placeholders))
        self._entry_by_placeholder = {entry.placeholder: index for index, entry in enumerate(self._entries)}
        self._code_start = min(entry.code_start for entry in self._entries)
        self._code_stop = max(entry.code_start + sum(entry.codebook_sizes) for entry in self._entries)

    def _check_vocabulary(self, bridge_config: dict) -> None:
        """The stored ids must still be what the vocabulary says (cheap: markers plus both ends of
        every codebook block), or every mapping would be silently wrong."""
        expected = dict(zip(bridge_config["number_tokens"]["digits"], bridge_config["number_token_ids"]["digits"]))
        expected[bridge_config["number_tokens"]["times"]] = bridge_config["number_token_ids"]["times"]
        expected[bridge_config["number_tokens"]["end"]] = bridge_config["number_token_ids"]["end"]
        for entry in self._entries:
            expected[entry.begin_token], expected[entry.end_token] = entry.begin_id, entry.end_id
            for codebook, (offset, size) in enumerate(zip(entry.block.offsets, entry.codebook_sizes)):
                expected[entry.code_token(codebook, 0)] = offset
                expected[entry.code_token(codebook, size - 1)] = offset + size - 1
        for token, token_id in expected.items():
            if self._tokenizer.token_to_id(token) != token_id:
                raise ValueError(
                    f"bridge_config says {token} has id {token_id}, the vocabulary says "
                    f"{self._tokenizer.token_to_id(token)}; tokenizer.json and tokenizer_config.json disagree"
                )

    def _require_bridge(self) -> None:
        if not self._entries:
            raise ValueError("this MultimodalTokenizer has no bridge_config; build it with MultimodalTokenizer.from_tokenizers")

    # ----- facts --------------------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        return [entry.name for entry in self._entries]

    def modality_entry(self, name: str) -> ModalityEntry:
        for entry in self._entries:
            if entry.name == name:
                return entry
        raise KeyError(f"no modality tokenizer named {name!r}; this bridge has {self.modality_names}")

    def span_layout(self, name: str) -> SpanLayout:
        return self._layouts[self._entries.index(self.modality_entry(name))]

    @property
    def text_vocab_size(self) -> int:
        """Ids below this belong to the text tokenizer (useful to freeze or initialise embeddings)."""
        return int(self.init_kwargs["bridge_config"]["text_vocab_size"])

    def is_code_token(self, input_ids) -> torch.BoolTensor:
        """True where an id is a modality code (not text, not a marker)."""
        ids = torch.as_tensor(input_ids)
        return (ids >= self._code_start) & (ids < self._code_stop)

    def __repr__(self) -> str:
        modalities = ", ".join(
            f"{entry.name}: {entry.model_type} {entry.kind} {'x'.join(map(str, entry.codebook_sizes))} codes "
            f"at ids {entry.code_start}..{entry.code_start + sum(entry.codebook_sizes) - 1}"
            for entry in self._entries
        )
        return (
            f"{type(self).__name__}(name_or_path='{self.name_or_path}', len={len(self)}, "
            f"text_vocab_size={self.init_kwargs.get('bridge_config', {}).get('text_vocab_size')}, "
            f"special_tokens={self.special_tokens_map}, modalities={{{modalities}}})"
        )

    # Data loaders and `datasets.map(num_proc=...)` pickle tokenizers; some modality tokenizers
    # (weight-norm parametrisations) only serialise through their state dict.
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_modality_models"] = {
            name: (type(model), model.config, model.state_dict(), next(model.parameters()).dtype)
            for name, model in self._modality_models.items()
        }
        return state

    def __setstate__(self, state):
        models = state.pop("_modality_models")
        self.__dict__.update(state)
        self._modality_models = {}
        for name, (model_class, config, state_dict, dtype) in models.items():
            model = model_class(config)
            model.load_state_dict(state_dict)
            self._modality_models[name] = model.to(dtype).eval()

    # ----- modality tokenizers ------------------------------------------------------------------------
    def modality_model(self, name: str) -> ModalTokenizer:
        """The modality tokenizer `name`, loaded on first use from the bridge folder (embedded) or
        from its recorded source."""
        if name not in self._modality_models:
            entry = self.modality_entry(name)
            repo, subfolder, hub_kwargs = self._weights_location(entry)
            location = {"subfolder": subfolder} if subfolder else {}
            model = AutoModel.from_pretrained(repo, **location, **hub_kwargs)
            if not isinstance(model, ModalTokenizer) or list(model.codebook_sizes) != entry.codebook_sizes:
                raise ValueError(
                    f"the weights for {name!r} at {repo!r} are not the modality tokenizer this bridge was built "
                    f"with (expected {entry.model_type} with codebooks {entry.codebook_sizes})"
                )
            self._modality_models[name] = model.eval()
        return self._modality_models[name]

    def modality_processor(self, name: str):
        """The processor of modality tokenizer `name` (its saved one, else the family default)."""
        processor = self._find_processor(name)
        if processor is None:
            model_type = self.modality_entry(name).model_type
            raise ValueError(f"{name!r} ({model_type}) has no registered processor; pass EncoderOutput items instead")
        return processor

    def _find_processor(self, name: str):
        if name not in self._modality_processors:
            model = self.modality_model(name)
            family = FAMILIES.get(model.config.model_type)
            processor_class = family.processor_class if family is not None else None
            processor = None
            if processor_class is not None:
                try:
                    repo, subfolder, hub_kwargs = self._weights_location(self.modality_entry(name))
                    location = {"subfolder": subfolder} if subfolder else {}
                    processor = processor_class.from_pretrained(repo, **location, **hub_kwargs)
                except (OSError, ValueError):
                    processor = processor_class.from_model_config(model.config)
            self._modality_processors[name] = processor
        return self._modality_processors[name]

    def _weights_location(self, entry: ModalityEntry) -> tuple[str, str | None, dict]:
        if entry.subfolder is not None and self._weights_root is not None:
            subfolder = "/".join(part for part in (self._weights_subfolder, entry.subfolder) if part)
            return self._weights_root, subfolder, dict(self._hub_kwargs)
        if entry.source is not None:
            shared = {key: value for key, value in self._hub_kwargs.items() if key != "revision"}
            return entry.source, None, shared
        raise ValueError(
            f"modality tokenizer {entry.name!r} has no weights to load: it was built in memory and this bridge "
            "was not loaded from a folder that embeds it"
        )

    # ----- codes <-> span ids -------------------------------------------------------------------------
    def encode_codes(self, name: str, codes, codes_mask=None) -> list[torch.LongTensor]:
        """Codes `[B, Q', T]` (+ `codes_mask` `[B, T]`) of modality tokenizer `name` -> one span of ids
        per item, markers and shape header included."""
        entry, layout = self.modality_entry(name), self.span_layout(name)
        codes = torch.as_tensor(codes)
        if codes.ndim == 2:
            codes = codes[None]
        if codes.ndim != 3:
            raise ValueError(f"codes must be [batch, codebooks, positions], got shape {tuple(codes.shape)}")
        spans = []
        for index in range(codes.shape[0]):
            item = codes[index]
            if codes_mask is not None:
                item = item[:, torch.as_tensor(codes_mask[index]).bool().to(item.device)]
            dims = tuple(entry.grid) if entry.kind == "grid" else None
            if dims is not None and item.shape[-1] != math.prod(dims):
                raise ValueError(f"{name!r} writes {dims[0]}x{dims[1]} grids; got {item.shape[-1]} positions")
            spans.append(layout.span_ids(item, dims))
        return spans

    def encode_modality(self, name: str, items: Sequence, *, sampling_rate: int | None = None, **encode_kwargs):
        """Raw items (images, audio arrays or `(array, rate)` tuples, ...) or `EncoderOutput`s of
        modality tokenizer `name` -> one span of ids per item."""
        entry = self.modality_entry(name)
        spans: list[torch.LongTensor | None] = [None] * len(items)
        raw_items: dict[int | None, list[tuple[int, Any]]] = defaultdict(list)  # rate -> (index, item)
        for index, item in enumerate(items):
            if isinstance(item, EncoderOutput):
                if item.codes is None:
                    raise ValueError(f"an EncoderOutput for {name!r} has no codes (continuous latents)")
                spans[index] = self.encode_codes(name, item.codes, item.codes_mask)[0]
            elif entry.modality in AUDIO_MODALITIES:
                item, rate = item if isinstance(item, tuple) else (item, sampling_rate)
                if rate is None:
                    raise ValueError(f"audio for {name!r} needs its sampling rate: pass (array, rate) items or sampling_rate=")
                raw_items[int(rate)].append((index, item))
            else:
                raw_items[None].append((index, item))
        if raw_items:
            model, processor = self.modality_model(name), self.modality_processor(name)
            options = {**entry.encode_kwargs, **encode_kwargs}
            device = next(model.parameters()).device
            for rate, group in raw_items.items():
                batch = [item for _, item in group]
                if rate is None:
                    inputs = processor(batch, return_tensors="pt")
                else:
                    inputs = processor(batch, sampling_rate=rate, return_tensors="pt")
                with torch.inference_mode():
                    encoded = model.encode(**inputs.to(device), **options)
                if encoded.codes is None:
                    raise ValueError(f"{name!r} is a continuous tokenizer: encode returned no codes")
                group_spans = self.encode_codes(name, encoded.codes.cpu(), _cpu(encoded.codes_mask))
                for (index, _), span in zip(group, group_spans):
                    spans[index] = span
        return spans

    # ----- text + modalities -> input ids ----------------------------------------------------------------
    def __call__(
        self,
        text=None,
        text_pair=None,
        *,
        images=None,
        audio=None,
        modality_inputs: Mapping[str, Sequence] | None = None,
        sampling_rate: int | None = None,
        encode_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """Tokenizes text whose placeholders (`<image>`, `<audio>`, ...) are replaced by the spans
        of the given items.

        images / audio: items for the image / audio (and speech) placeholders, in order of
            appearance across the batch, or one list per text; audio items are arrays with
            `sampling_rate=` or `(array, rate)` tuples. `EncoderOutput`s are used as codes directly.
        modality_inputs: `{name: items}` for the placeholders of one modality tokenizer by name.
        encode_kwargs: `{name: {option: value}}` passed to that tokenizer's `encode` this call.
        Supports `add_special_tokens`, `padding`, `max_length`, `pad_to_multiple_of`,
        `padding_side`, `return_tensors`, `return_attention_mask`; text without placeholders and
        without modality inputs goes through the plain text tokenizer unchanged.
        """
        streams_given = images is not None or audio is not None or bool(modality_inputs)
        if text is None or not self._entries or (not streams_given and not self._has_placeholders(text)):
            return super().__call__(text, text_pair, **kwargs)
        unsupported = [
            key for key in ("text_target", "text_pair_target", "stride", "is_split_into_words", "return_offsets_mapping",
                            "return_overflowing_tokens", "return_special_tokens_mask", "return_length")
            if kwargs.get(key)
        ]
        if text_pair is not None or kwargs.get("truncation") or unsupported:
            raise ValueError(
                "with modality inputs only add_special_tokens, padding, max_length, pad_to_multiple_of, padding_side, "
                f"return_tensors and return_attention_mask are supported (got {['text_pair'] if text_pair else []}"
                f"{['truncation'] if kwargs.get('truncation') else []}{unsupported}); truncating would cut spans"
            )
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        sequences = self._build_sequences(
            texts, images, audio, dict(modality_inputs or {}), sampling_rate, dict(encode_kwargs or {}),
            add_special_tokens=kwargs.get("add_special_tokens", True),
        )
        encoded = {"input_ids": sequences}
        if "token_type_ids" in self.model_input_names and kwargs.get("return_token_type_ids") is not False:
            encoded["token_type_ids"] = [[0] * len(sequence) for sequence in sequences]
        padded = self.pad(
            encoded,
            padding=kwargs.get("padding", False),
            max_length=kwargs.get("max_length"),
            pad_to_multiple_of=kwargs.get("pad_to_multiple_of"),
            padding_side=kwargs.get("padding_side"),
            return_attention_mask=kwargs.get("return_attention_mask"),
            return_tensors=kwargs.get("return_tensors"),
        )
        if not batched and kwargs.get("return_tensors") is None:
            padded = BatchEncoding({key: value[0] for key, value in padded.items()})
        return padded

    def encode(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        *,
        images=None,
        audio=None,
        modality_inputs: Mapping[str, Sequence] | None = None,
        sampling_rate: int | None = None,
        encode_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs,
    ):
        """`input_ids` of `__call__` (with modality inputs or placeholders), else the text tokenizer's
        `encode`."""
        streams_given = images is not None or audio is not None or bool(modality_inputs)
        if self._entries and isinstance(text, str) and (streams_given or self._has_placeholders(text)):
            return self(
                text, text_pair, images=images, audio=audio, modality_inputs=modality_inputs,
                sampling_rate=sampling_rate, encode_kwargs=encode_kwargs, add_special_tokens=add_special_tokens,
                **kwargs,
            )["input_ids"]
        return super().encode(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)

    def _has_placeholders(self, text) -> bool:
        texts = [text] if isinstance(text, str) else text
        return any(isinstance(item, str) and self._placeholder_pattern.search(item) for item in texts)

    def _build_sequences(self, texts, images, audio, modality_inputs, sampling_rate, encode_kwargs, add_special_tokens):
        unknown = sorted(set(modality_inputs) - set(self.modality_names))
        if unknown:
            raise ValueError(f"modality_inputs names unknown modality tokenizers {unknown}; known: {self.modality_names}")
        for name in encode_kwargs:
            self.modality_entry(name)

        # Split every text at its placeholders; which stream feeds a placeholder: the entry's own
        # modality_inputs list if given, else the images / audio list of its modality.
        layouts: list[list[str | int]] = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"text {index} is a {type(text).__name__}, expected a string")
            parts, cursor = [], 0
            for match in self._placeholder_pattern.finditer(text):
                parts += [text[cursor : match.start()], self._entry_by_placeholder[match.group(0)]]
                cursor = match.end()
            layouts.append(parts + [text[cursor:]])

        def stream_of(entry: ModalityEntry) -> str:
            if entry.name in modality_inputs:
                return entry.name
            if entry.modality == "image":
                return "images"
            if entry.modality in AUDIO_MODALITIES:
                return "audio"
            raise ValueError(f"pass the items for {entry.placeholder} as modality_inputs={{'{entry.name}': [...]}}")

        keys_per_text = [[stream_of(self._entries[part]) for part in parts if isinstance(part, int)] for parts in layouts]
        streams = {"images": images, "audio": audio, **modality_inputs}
        queues = {
            key: _split_per_text(key, items, [keys.count(key) for keys in keys_per_text])
            for key, items in streams.items()
            if items is not None
        }
        missing = sorted({key for keys in keys_per_text for key in keys} - set(queues))
        if missing:
            raise ValueError(f"the text has placeholders for {missing} but no such items were given")

        assignments: dict[str, list[tuple[int, Any]]] = defaultdict(list)  # entry name -> (slot, item)
        slots: list[tuple[int, int]] = []  # slot -> (text index, part index)
        for text_index, parts in enumerate(layouts):
            for part_index, part in enumerate(parts):
                if isinstance(part, int):
                    entry = self._entries[part]
                    item = queues[stream_of(entry)][text_index].pop(0)
                    assignments[entry.name].append((len(slots), item))
                    slots.append((text_index, part_index))

        span_of_slot: dict[int, list[int]] = {}
        for name, assigned in assignments.items():
            spans = self.encode_modality(
                name, [item for _, item in assigned], sampling_rate=sampling_rate, **encode_kwargs.get(name, {})
            )
            for (slot, _), span in zip(assigned, spans):
                span_of_slot[slot] = span.tolist()

        # All text pieces in one batched call to the Rust tokenizer, without specials; the text
        # tokenizer's own prefix/suffix (bos, eos, cls, ...) is added around the whole sequence.
        pieces = [part for parts in layouts for part in parts if isinstance(part, str) and part]
        self.set_truncation_and_padding(PaddingStrategy.DO_NOT_PAD, TruncationStrategy.DO_NOT_TRUNCATE, None, 0, None, None)
        encoded_pieces = iter(encoding.ids for encoding in self._tokenizer.encode_batch(pieces, add_special_tokens=False))
        prefix, suffix = self._special_affixes() if add_special_tokens else ([], [])
        slot_at = {position: slot for slot, position in enumerate(slots)}
        sequences = []
        for text_index, parts in enumerate(layouts):
            sequence = list(prefix)
            for part_index, part in enumerate(parts):
                if isinstance(part, int):
                    sequence += span_of_slot[slot_at[(text_index, part_index)]]
                elif part:
                    sequence += next(encoded_pieces)
            sequences.append(sequence + list(suffix))
        return sequences

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        """The ids the text tokenizer's post-processor puts before and after a single sequence."""
        marker = NUMBER_TOKENS["end"]
        marker_id = self._numbers.end_id
        ids = self._tokenizer.encode(marker, add_special_tokens=True).ids
        position = ids.index(marker_id)
        return ids[:position], ids[position + 1 :]

    # ----- input ids -> text ------------------------------------------------------------------------------
    def _decode(
        self,
        token_ids,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        modality_spans: str = "summary",
        **kwargs,
    ) -> str:
        """As the text tokenizer's decode, with each modality span rendered as a short summary such
        as `<image: 8x8 grid>` (`modality_spans="summary"`), as its raw tokens ("tokens", which
        re-tokenise to the same ids), or dropped ("skip"; also what `skip_special_tokens` does)."""
        if modality_spans not in ("summary", "tokens", "skip"):
            raise ValueError(f"modality_spans must be 'summary', 'tokens' or 'skip', got {modality_spans!r}")
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if isinstance(token_ids, Mapping):
            token_ids = token_ids["input_ids"]
        token_ids = [int(token) for token in token_ids]
        base = super()._decode
        options = {"skip_special_tokens": skip_special_tokens, "clean_up_tokenization_spaces": clean_up_tokenization_spaces}
        if modality_spans == "tokens" or not self._entries:
            return base(token_ids, **options, **kwargs)
        locations = self._locate(token_ids)
        if not locations:
            return base(token_ids, **options, **kwargs)
        # Decode the text in one call (decoders such as WordPiece join words across the whole
        # sequence), with each span reduced to its first marker, then swap the markers' text for
        # the summaries.
        kept, cursor = [], 0
        drop = skip_special_tokens or modality_spans == "skip"
        for location in locations:
            kept += token_ids[cursor : location.start] + ([] if drop else [token_ids[location.start]])
            cursor = location.stop
        text = base(kept + token_ids[cursor:], **options, **kwargs)
        if drop:
            return text
        pieces, position = [], 0
        for location in locations:
            marker = self._tokenizer.id_to_token(token_ids[location.start])
            found = text.find(marker, position)
            if found < 0:
                continue
            pieces += [text[position:found], self._summarise(self._read_span(token_ids, location))]
            position = found + len(marker)
        return "".join(pieces) + text[position:]

    def _locate(self, token_ids) -> list[SpanLocation]:
        return locate_spans(
            token_ids, [entry.begin_id for entry in self._entries], [entry.end_id for entry in self._entries]
        )

    def _read_span(self, token_ids, location: SpanLocation) -> DecodedSpan:
        entry = self._entries[location.layout]
        span = DecodedSpan(
            name=entry.name, modality=entry.modality, kind=entry.kind, start=location.start, stop=location.stop,
            token_rate=entry.token_rate,
        )
        if location.problem:
            span.error = location.problem
            return span
        try:
            parsed = self._layouts[location.layout].parse(token_ids[location.start : location.stop])
        except SpanError as error:
            span.error = str(error)
            return span
        if entry.kind == "grid" and list(parsed.dims) != entry.grid:
            span.error = f"grid {parsed.dims[0]}x{parsed.dims[1]} does not match this tokenizer's {entry.grid[0]}x{entry.grid[1]}"
            return span
        if entry.max_tokens is not None and entry.kind == "sequence" and parsed.dims[0] > entry.max_tokens:
            span.error = f"{parsed.dims[0]} tokens, more than this tokenizer's {entry.max_tokens}"
            return span
        span.dims, span.codes = parsed.dims, parsed.codes
        return span

    @staticmethod
    def _summarise(span: DecodedSpan) -> str:
        if span.error:
            return f"<{span.name}: unreadable span: {span.error}>"
        codebooks = span.codes.shape[0]
        more = f" x {codebooks} codebooks" if codebooks > 1 else ""
        if span.kind == "grid":
            return f"<{span.name}: {span.dims[0]}x{span.dims[1]} grid{more}>"
        if span.kind == "frames":
            seconds = f", {span.dims[0] / span.token_rate:.2f} s" if span.token_rate else ""
            return f"<{span.name}: {span.dims[0]} frames{more}{seconds}>"
        return f"<{span.name}: {span.dims[0]} tokens{more}>"

    # ----- input ids -> modalities --------------------------------------------------------------------
    def decode_modalities(self, input_ids, *, decode_values: bool = True, strict: bool = False):
        """Finds every modality span in `input_ids` and reads it back.

        Returns a `DecodedModalities` for one sequence (or a list of them for a batch) whose
        `spans` hold the shape, codes and, with `decode_values`, the decoded value (PIL image,
        numpy waveform) of every span. A truncated or malformed span gets an `error` and is
        skipped; the other spans still decode. `strict=True` raises `SpanError` instead.
        `decode_values=False` needs no modality tokenizer weights.
        """
        self._require_bridge()
        if isinstance(input_ids, Mapping):
            input_ids = input_ids["input_ids"]
        if isinstance(input_ids, (list, tuple)) and input_ids and not isinstance(input_ids[0], (int, np.integer)):
            return [self.decode_modalities(row, decode_values=decode_values, strict=strict) for row in input_ids]
        ids = torch.as_tensor(input_ids if len(input_ids) else [], dtype=torch.long)
        if ids.ndim == 2:
            return [self.decode_modalities(row, decode_values=decode_values, strict=strict) for row in ids]
        if ids.ndim != 1:
            raise ValueError(f"input_ids must be one sequence or a batch of them, got shape {tuple(ids.shape)}")
        token_ids = ids.long().cpu()
        spans = [self._read_span(token_ids, location) for location in self._locate(token_ids)]
        if strict:
            for span in spans:
                if span.error:
                    raise SpanError(f"{span.name} span at ids [{span.start}, {span.stop}): {span.error}")
        if decode_values:
            self._decode_values([span for span in spans if span.error is None])
            if strict:
                for span in spans:
                    if span.error:
                        raise SpanError(f"{span.name} span at ids [{span.start}, {span.stop}): {span.error}")
        return DecodedModalities(spans)

    def _decode_values(self, spans: list[DecodedSpan]) -> None:
        """Decodes readable spans, batching spans of the same tokenizer and shape together."""
        groups: dict[tuple, list[DecodedSpan]] = defaultdict(list)
        for span in spans:
            groups[(span.name, span.dims, tuple(span.codes.shape))].append(span)
        for (name, _, _), group in groups.items():
            try:
                model, processor = self.modality_model(name), self._find_processor(name)
                device = next(model.parameters()).device
                codes = torch.stack([span.codes for span in group]).to(device)
                with torch.inference_mode():
                    decoded = model.decode(codes)
                rate = int(processor.sampling_rate) if group[0].modality in AUDIO_MODALITIES and processor else None
                if processor is None:  # no family processor: the model's raw values, trimmed by the mask
                    values = list(decoded.values.cpu())
                    if decoded.values_mask is not None:
                        values = [value[..., mask.cpu()] for value, mask in zip(values, decoded.values_mask.bool())]
                elif group[0].modality in AUDIO_MODALITIES:
                    values = processor.postprocess(decoded.values, decoded.values_mask)
                else:
                    values = processor.postprocess(decoded.values)
            except (ValueError, RuntimeError, OSError) as error:
                for span in group:
                    span.error = f"decode failed: {error}"
                continue
            for span, value in zip(group, values):
                span.value, span.sampling_rate = value, rate

    # ----- saving --------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory, *args, embed_modalities: bool = True, **kwargs):
        """Saves the tokenizer files plus, with `embed_modalities` (default), every modality
        tokenizer and its processor in a `<name>_tokenizer/` subfolder so the folder (or Hub repo)
        is self-contained. With `embed_modalities=False` the config references each modality
        tokenizer's repo id / path instead, which must then exist."""
        self._require_bridge()
        save_directory = str(save_directory)
        push_to_hub = kwargs.pop("push_to_hub", False)
        max_shard_size = kwargs.pop("max_shard_size", None)
        os.makedirs(save_directory, exist_ok=True)
        if push_to_hub:
            from huggingface_hub import create_repo

            commit_message = kwargs.pop("commit_message", None)
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            repo_id = create_repo(repo_id, exist_ok=True, token=kwargs.get("token"), private=kwargs.get("private")).repo_id
            timestamps = self._get_files_timestamps(save_directory)

        bridge_config = copy.deepcopy(self.init_kwargs["bridge_config"])
        for entry in bridge_config["modalities"]:
            name = entry["name"]
            if embed_modalities:
                subfolder = f"{name}_tokenizer"
                target = os.path.join(save_directory, subfolder)
                model_kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
                self.modality_model(name).save_pretrained(target, **model_kwargs)
                processor = self._find_processor(name)
                if processor is not None:
                    processor.save_pretrained(target)
                entry["subfolder"] = subfolder
            else:
                if entry["source"] is None:
                    raise ValueError(
                        f"modality tokenizer {name!r} has no repo id or path to reference (it was built in memory or "
                        "is embedded); save with embed_modalities=True"
                    )
                entry["subfolder"] = None

        init_kwargs = self.init_kwargs
        self.init_kwargs = {**init_kwargs, "bridge_config": bridge_config}
        for key in ("is_local", "local_files_only"):
            self.init_kwargs.pop(key, None)
        try:
            files = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.init_kwargs = init_kwargs
        _declare_added_tokens_in_tokenizer_json(files[0])
        if push_to_hub:
            self._upload_modified_files(
                save_directory, repo_id, timestamps, commit_message=commit_message, token=kwargs.get("token")
            )
        return files


def _declare_added_tokens_in_tokenizer_json(tokenizer_config_file: str) -> None:
    """tokenizer.json already lists every added token. Without an `added_tokens_decoder` entry in
    tokenizer_config.json, transformers re-reads them all from tokenizer.json and deep-copies them
    while loading; an empty one says there is nothing more (3x faster loads with 100k+ codes)."""
    with open(tokenizer_config_file, encoding="utf-8") as handle:
        config = json.load(handle)
    config["added_tokens_decoder"] = {}
    with open(tokenizer_config_file, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _cpu(tensor):
    return None if tensor is None else tensor.cpu()


def _split_per_text(key: str, items, needed: list[int]) -> list[list]:
    """Items for one stream -> one list per text. `items` is flat (consumed in placeholder order
    across the texts) or holds one list per text."""
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"`{key}` must be a list of items, got {type(items).__name__}")
    items = list(items)
    if items and len(items) == len(needed) and all(isinstance(item, list) for item in items):
        for index, (per_text, count) in enumerate(zip(items, needed)):
            if len(per_text) != count:
                raise ValueError(f"text {index} has {count} placeholders for `{key}` but {len(per_text)} items were given")
        return [list(per_text) for per_text in items]
    if len(items) != sum(needed):
        raise ValueError(f"the text has {sum(needed)} placeholders for `{key}` but {len(items)} items were given")
    per_text, cursor = [], 0
    for count in needed:
        per_text.append(items[cursor : cursor + count])
        cursor += count
    return per_text


AutoTokenizer.register(MultimodalTokenizerConfig, tokenizer_class=MultimodalTokenizer, exist_ok=True)
