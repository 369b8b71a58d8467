"""Bridge client: builds a MultimodalTokenizer, pushes it to the fake Hub, pulls it back with
AutoTokenizer into an empty cache (so every file travels over HTTP), then reloads it from that
cache alone, and reports what each copy does with the same text, photograph and clip.

Usage: bridge.py REPORT WORK_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from huggingface_hub import list_repo_files
from samples import write_report
from skimage import data
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, TokenizersBackend

import modalzoo  # noqa: F401  (registers MultimodalTokenizer with AutoTokenizer)
from modalzoo.bridge import MultimodalTokenizer

REPO = "tester/bridge-tiny"
work = Path(sys.argv[2])

bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
corpus = ["Describe the photograph and transcribe the recording, then answer the question."] * 4
bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
text_tokenizer = TokenizersBackend(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True)
tokenizer = MultimodalTokenizer.from_tokenizers(text_tokenizer, {"image": "reference-image-tiny", "audio": "reference-audio-tiny"})

seconds = np.arange(8000) / 16000
clip = (0.3 * np.sin(2 * np.pi * 180 * seconds)).astype(np.float32)
text = "Describe the photograph <image> and transcribe the recording <audio>"
inputs = {"images": [data.astronaut()], "audio": [(clip, 16000)]}


def describe(tok) -> dict:
    ids = tok(text, **inputs)["input_ids"]
    decoded = tok.decode_modalities(ids)
    return {
        "class": type(tok).__name__,
        "len": len(tok),
        "ids": ids,
        "text": tok.decode(ids),
        "shapes": [{key: list(value) if isinstance(value, tuple) else value for key, value in shape.items()}
                   for shape in decoded.shapes],
        "errors": decoded.errors,
        "image": np.asarray(decoded.images[0]).astype(int).sum().item(),
        "audio": [float(np.abs(decoded.audio[0]).sum()), int(decoded.audio[0].shape[0])],
    }


report = {"built": describe(tokenizer)}
tokenizer.push_to_hub(REPO)
report["files"] = sorted(list_repo_files(REPO))
report["pulled"] = describe(AutoTokenizer.from_pretrained(REPO, cache_dir=work / "cache"))
report["cached"] = describe(AutoTokenizer.from_pretrained(REPO, cache_dir=work / "cache", local_files_only=True))
write_report(report)
