"""WavTokenizer feature extractor: mono 24 kHz, `input_values` `[B, 1, T]` + `padding_mask`."""

from __future__ import annotations

from ...processing_utils import ModalAudioFeatureExtractor


class WavTokenizerFeatureExtractor(ModalAudioFeatureExtractor):
    """Mono audio resampled to 24 kHz (torchaudio, as the original's `convert_audio`), stereo
    averaged, zero-padded to a multiple of the hop (320 or 600 samples) with a `padding_mask`."""

    def __init__(self, sampling_rate: int = 24000, hop_length: int = 320, padding_value: float = 0.0, **kwargs):
        super().__init__(sampling_rate=sampling_rate, hop_length=hop_length, padding_value=padding_value, **kwargs)
