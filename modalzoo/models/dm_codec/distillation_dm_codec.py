"""DM-Codec's teachers, computed online (the original precomputes them in `extract_rep.py`).

* Speech model (SM): HuBERT through transformers; its feature extractor's normalisation, then
  `hidden_states[layer]` or the mean of all hidden states ("avg"). HuBERT's 320-sample hop gives
  floor((T - 400) / 320) + 1 frames against the codec's ceil(T / 320): the loss compares the
  first min of the two, as the original.
* Language model (LM): a wav2vec2 CTC model transcribes the audio (greedy argmax, CTC decoding
  by its tokenizer); a BERT-family encoder embeds the transcript, tokenised with
  `padding="max_length", truncation=True, max_length=<number of ASR frames>` as the original.
  So the text sequence has as many positions as the ASR has frames (tokens first, then [PAD]
  positions under the attention mask); it is not time-aligned, and the loss again compares the
  first min(codec frames, positions).

Teachers are frozen, run without gradients, and stay out of the codec's state dict: they are
training-time inputs, not part of a release. Each loads with `from_pretrained` from a Hub repo id
or a local folder.
"""

from __future__ import annotations

import torch
from torch import nn


def _select_layer(hidden_states: tuple[torch.Tensor, ...], layer: int | str) -> torch.Tensor:
    if layer == "avg":
        return torch.stack(hidden_states).mean(0)
    return hidden_states[int(layer)]


def _normalise(audio: torch.Tensor, feature_extractor) -> torch.Tensor:
    """`[B, T]`; the zero-mean unit-variance normalisation of Wav2Vec2FeatureExtractor (per
    item, eps 1e-7) when the teacher's extractor asks for it."""
    if not getattr(feature_extractor, "do_normalize", False):
        return audio
    mean = audio.mean(-1, keepdim=True)
    variance = audio.var(-1, keepdim=True, unbiased=False)
    return (audio - mean) / torch.sqrt(variance + 1e-7)


class _Frozen(nn.Module):
    def train(self, mode: bool = True):
        return super().train(False)  # teachers always run in eval mode (no dropout)


class SpeechModelTeacher(_Frozen):
    """HuBERT (or any transformers speech encoder) -> `[B, frames, hidden]` at 50 frames/s."""

    def __init__(self, name_or_path: str, layer: int | str = "avg", **from_pretrained_kwargs):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        self.feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **from_pretrained_kwargs)
        self.model = AutoModel.from_pretrained(name_or_path, **from_pretrained_kwargs).eval().requires_grad_(False)
        self.layer = layer

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """`audio` `[B, 1, T]` (or `[B, T]`) at 16 kHz."""
        audio = audio.reshape(audio.shape[0], -1).to(self.model.dtype)
        output = self.model(_normalise(audio, self.feature_extractor), output_hidden_states=True)
        return _select_layer(output.hidden_states, self.layer)


class LanguageModelTeacher(_Frozen):
    """wav2vec2 CTC transcript -> BERT-family encoder -> `[B, ASR frames, hidden]`."""

    def __init__(self, asr_name_or_path: str, text_name_or_path: str, layer: int | str = "avg", **from_pretrained_kwargs):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel, AutoTokenizer, Wav2Vec2ForCTC

        self.asr_feature_extractor = AutoFeatureExtractor.from_pretrained(asr_name_or_path, **from_pretrained_kwargs)
        self.asr_tokenizer = AutoTokenizer.from_pretrained(asr_name_or_path, **from_pretrained_kwargs)
        self.asr = Wav2Vec2ForCTC.from_pretrained(asr_name_or_path, **from_pretrained_kwargs).eval().requires_grad_(False)
        self.text_tokenizer = AutoTokenizer.from_pretrained(text_name_or_path, **from_pretrained_kwargs)
        self.text_model = AutoModel.from_pretrained(text_name_or_path, **from_pretrained_kwargs).eval().requires_grad_(False)
        self.layer = layer

    @torch.no_grad()
    def transcribe(self, audio: torch.Tensor) -> tuple[list[str], int]:
        """-> (one transcript per item, number of ASR frames)."""
        audio = audio.reshape(audio.shape[0], -1).to(self.asr.dtype)
        logits = self.asr(_normalise(audio, self.asr_feature_extractor)).logits
        return self.asr_tokenizer.batch_decode(logits.argmax(-1)), logits.shape[1]

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        texts, frames = self.transcribe(audio)
        inputs = self.text_tokenizer(
            texts, return_tensors="pt", truncation=True, padding="max_length", max_length=frames
        ).to(self.text_model.device)
        output = self.text_model(**inputs, output_hidden_states=True)
        return _select_layer(output.hidden_states, self.layer)


class DMCodecTeachers(_Frozen):
    """The teachers a `DMCodecConfig` asks for (`distill_teacher`): `speech` and / or `text`."""

    def __init__(self, config, **from_pretrained_kwargs):
        super().__init__()
        self.teacher = config.distill_teacher
        if self.teacher is None:
            raise ValueError("the config sets no distill_teacher")
        self.speech = None
        self.text = None
        if self.teacher in ("hubert", "combined"):
            self.speech = SpeechModelTeacher(config.speech_teacher, config.speech_teacher_layer, **from_pretrained_kwargs)
        if self.teacher in ("llm", "combined"):
            self.text = LanguageModelTeacher(
                config.asr_model, config.text_teacher, config.text_teacher_layer, **from_pretrained_kwargs
            )

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        if self.speech is not None:
            features["speech_teacher_features"] = self.speech(audio)
        if self.text is not None:
            features["text_teacher_features"] = self.text(audio)
        return features
