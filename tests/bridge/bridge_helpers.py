"""Helpers for the LLM bridge tests: real text tokenizers trained offline in milliseconds, and a
codes-only modality tokenizer whose codebooks, layout and modality tests can choose freely."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import TokenizersBackend

from modalzoo.modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, ModalTokenizerConfig

PARAGRAPH = """\
A multimodal language model reads text, images and sound as one sequence of tokens. An image
tokenizer turns a photograph into a short grid or a flexible-length list of discrete codes; an
audio codec turns a speech clip into frames of codes, one code per codebook and frame. The bridge
gives every code its own token id next to the words of the text tokenizer, marks where each image
or sound begins and ends, and writes down its shape, so that the model's output can be turned back
into pictures and waveforms. Describe the picture. Transcribe the recording. What does the cat say?
"""


def train_bpe(vocab_size: int = 400, corpus: str = PARAGRAPH) -> TokenizersBackend:
    """A byte-level BPE (GPT-2 style, with a bos token) trained on `corpus`; a few milliseconds."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(corpus.splitlines(), trainer)
    return TokenizersBackend(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        add_bos_token=True,
    )


def train_wordpiece(vocab_size: int = 200) -> TokenizersBackend:
    """A BERT-style uncased WordPiece with `[CLS] ... [SEP]` around every sequence."""
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    backend.train_from_iterator(PARAGRAPH.splitlines(), trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return TokenizersBackend(
        tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]"
    )


def word_level(vocab_size: int) -> TokenizersBackend:
    """A whitespace word-level tokenizer with exactly `vocab_size` entries: any text vocab size."""
    vocab = {"[UNK]": 0, **{f"w{index}": index for index in range(1, vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()
    return TokenizersBackend(tokenizer_object=backend, unk_token="[UNK]")


class CodesOnlyConfig(ModalTokenizerConfig):
    model_type = "codes_only_test"

    sizes: list[int] | None = None
    rate: float | None = None
    grid: int | None = None
    length: int | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [16] if self.sizes is None else list(self.sizes)

    @property
    def token_rate(self) -> float | None:
        return self.rate

    @property
    def max_tokens(self) -> int | None:
        return self.length


class CodesOnlyImage(ModalTokenizer):
    """Encodes nothing; decodes codes to a tensor holding them, so decoded values are checkable."""

    config_class = CodesOnlyConfig
    modality = "image"

    def __init__(self, config):
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))
        self.post_init()

    @property
    def grid_size(self):
        return self.config.grid

    def encode(self, pixel_values) -> EncoderOutput:
        raise NotImplementedError

    def decode(self, codes, *, codes_mask=None) -> DecoderOutput:
        return DecoderOutput(values=self.check_codes(codes).float())


class CodesOnlyAudio(CodesOnlyImage):
    modality = "audio"
