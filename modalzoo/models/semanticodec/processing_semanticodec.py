"""SemantiCodec feature extractor: mono 16 kHz audio -> the original's normalised 128-bin Kaldi
filterbank in 10.24 s segments (`input_features`), plus `input_values` and `padding_mask`."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import torchaudio
from transformers import BatchFeature

from ...processing_utils import ModalAudioFeatureExtractor
from .configuration_semanticodec import FBANK_MEAN, FBANK_STD, MEL_FRAME_SHIFT_SAMPLES

SEGMENT_FRAMES = 1024
SEGMENT_SAMPLES = SEGMENT_FRAMES * MEL_FRAME_SHIFT_SAMPLES  # 10.24 s at 16 kHz
NUM_MEL_BINS = 128
# What a frame past an item's own segments holds in a batch: the normalised value of the
# filterbank's zero padding, a constant row, so the encoder treats it as padding.
PADDING_FEATURE = (0.0 - FBANK_MEAN) / (FBANK_STD * 2)


def num_segments(num_samples: int) -> int:
    """10.24 s segments the original encodes for `num_samples` of audio. It always appends
    zeros, so an exact multiple of 10.24 s still gets one more (silent) segment."""
    return num_samples // SEGMENT_SAMPLES + 1


def kaldi_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """One item's 16 kHz samples `[T]` -> `[num_segments(T) * 1024, 128]`, exactly as the original
    (`SemantiCodec.load_audio` + `utils.extract_kaldi_fbank_feature`): zero-pad to whole
    segments, remove the mean of the padded signal, Kaldi fbank (Hanning window, 25 ms / 10 ms,
    HTK mel, no dither, no energy), zero-pad the two frames Kaldi's edge snipping loses, and
    normalise with AudioSet's mean and twice its standard deviation."""
    if waveform.ndim != 1:
        raise ValueError(f"expected one item's samples [T], got shape {tuple(waveform.shape)}")
    segments = num_segments(waveform.shape[0])
    padded = F.pad(waveform.float(), (0, segments * SEGMENT_SAMPLES - waveform.shape[0]))
    padded = padded - padded.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        padded[None],
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=NUM_MEL_BINS,
        dither=0.0,
        frame_shift=10,
    )
    fbank = F.pad(fbank, (0, 0, 0, segments * SEGMENT_FRAMES - fbank.shape[0]))
    return (fbank - FBANK_MEAN) / (FBANK_STD * 2)


def batch_fbank(input_values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """`[B, 1, T]` audio with per-item `lengths` -> `[B, segments * 1024, 128]`: each item's own
    `kaldi_fbank`, batched by filling later segments with the constant `PADDING_FEATURE`."""
    items = [kaldi_fbank(input_values[index, 0, :length]) for index, length in enumerate(lengths)]
    frames = max(item.shape[0] for item in items)
    batch = items[0].new_full((len(items), frames, NUM_MEL_BINS), PADDING_FEATURE)
    for index, item in enumerate(items):
        batch[index, : item.shape[0]] = item
    return batch


class SemantiCodecFeatureExtractor(ModalAudioFeatureExtractor):
    """Mono audio resampled to 16 kHz (torchaudio, as the original's `load_audio`), stereo
    averaged, zero-padded to a multiple of the code hop with a `padding_mask`, and its filterbank
    `input_features` `[B, segments * 1024, 128]` (each item's computed on its own samples only,
    so a batch encodes as its items alone)."""

    model_input_names = ["input_values", "padding_mask", "input_features"]

    def __init__(self, sampling_rate: int = 16000, hop_length: int = 320, padding_value: float = 0.0, **kwargs):
        super().__init__(sampling_rate=sampling_rate, hop_length=hop_length, padding_value=padding_value, **kwargs)

    def __call__(self, raw_audio, sampling_rate: int | None = None, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        batch = super().__call__(raw_audio, sampling_rate=sampling_rate, return_tensors="pt", **kwargs)
        lengths = batch["padding_mask"].sum(-1).tolist()
        features = batch_fbank(batch["input_values"], lengths)
        data = {"input_values": batch["input_values"], "padding_mask": batch["padding_mask"], "input_features": features}
        return BatchFeature(data, tensor_type=return_tensors)


@functools.lru_cache(maxsize=4)
def _slaney_mel_filterbank(n_fft: int, n_mels: int, sampling_rate: int, f_max: float) -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, f_min=0.0, f_max=f_max, n_mels=n_mels, sample_rate=sampling_rate, norm="slaney", mel_scale="slaney"
    )


def audioldm_log_mel(
    audio: torch.Tensor, *, n_mels: int = 64, sampling_rate: int = 16000, n_fft: int = 1024, hop_length: int = 160, f_max: float = 8000.0
) -> torch.Tensor:
    """`[B, T]` audio -> `[B, T // hop + 1, n_mels]`: the log-mel the decoder's VAE reads, as the
    original's `TacotronSTFT.mel_spectrogram` computes it (Hann-windowed magnitude STFT on the
    reflect-padded signal, librosa's Slaney mel filters, log of the energies clamped at 1e-5) with
    AudioLDM's 16 kHz settings (1024 / 160 / 1024, 0-8 kHz)."""
    window = torch.hann_window(n_fft, device=audio.device, dtype=torch.float32)
    spectrum = torch.stft(audio.float(), n_fft, hop_length, window=window, center=True, pad_mode="reflect", return_complex=True).abs()
    filterbank = _slaney_mel_filterbank(n_fft, n_mels, sampling_rate, f_max).to(audio.device)
    mel = torch.matmul(spectrum.transpose(1, 2), filterbank)
    return torch.log(mel.clamp(min=1e-5))
