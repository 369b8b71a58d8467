"""How fast the LLM bridge maps codes to token ids and back (CPU, no model involved).

`bench_bridge_mapping()` returns the timings as a dict (for `modalzoo bench`);
`python benchmarks/bridge_mapping.py` prints them. Two measurements:
* `layout`: `CodeBlockLayout.codes_to_ids` / `ids_to_codes` on `[batch, codebooks, frames]`
  codes (with range validation), the pure arithmetic;
* `spans`: the same codes through a `MultimodalTokenizer` built on a small BPE text tokenizer,
  `encode_codes` (span ids with markers and shape header, per item) then
  `decode_modalities(decode_values=False)` (find the spans, parse headers, validate, map back).
"""

from __future__ import annotations

import time

import torch

from .mapping import CodeBlockLayout


def _best_of(repeats: int, function) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def _small_text_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import TokenizersBackend

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["codes become token ids and token ids become codes"] * 10, trainer)
    return TokenizersBackend(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def bench_bridge_mapping(num_codes: int = 1_000_000, num_codebooks: int = 2, batch: int = 4, repeats: int = 5) -> dict:
    from .multimodal_tokenizer import MultimodalTokenizer

    torch.manual_seed(0)
    frames = num_codes // (num_codebooks * batch)
    # the reference audio codec used for the span timing has 2 codebooks of 32 codes
    sizes = (32,) * num_codebooks
    codes = torch.randint(0, 32, (batch, num_codebooks, frames))
    total = codes.numel()

    layout = CodeBlockLayout(sizes, start=50_000)
    ids = layout.codes_to_ids(codes)
    assert torch.equal(layout.ids_to_codes(ids, num_codebooks), codes)
    layout_to_ids = _best_of(repeats, lambda: layout.codes_to_ids(codes))
    layout_to_codes = _best_of(repeats, lambda: layout.ids_to_codes(ids, num_codebooks))

    tokenizer = MultimodalTokenizer.from_tokenizers(
        _small_text_tokenizer(), {"audio": "reference-audio-tiny"}
    )
    spans = tokenizer.encode_codes("audio", codes)
    sequence = torch.cat(spans)
    decoded = tokenizer.decode_modalities(sequence, decode_values=False)
    assert all(torch.equal(span.codes, codes[index]) for index, span in enumerate(decoded.spans))
    spans_to_ids = _best_of(repeats, lambda: tokenizer.encode_codes("audio", codes))
    spans_to_codes = _best_of(repeats, lambda: tokenizer.decode_modalities(sequence, decode_values=False))
    return {
        "num_codes": total,
        "shape": [batch, num_codebooks, frames],
        "layout_codes_to_ids_s": layout_to_ids,
        "layout_ids_to_codes_s": layout_to_codes,
        "spans_codes_to_ids_s": spans_to_ids,
        "spans_ids_to_codes_s": spans_to_codes,
        "round_trip_s": spans_to_ids + spans_to_codes,
        "threads": torch.get_num_threads(),
    }
