"""DM-Codec feature extractor: mono 16 kHz, `input_values` `[B, 1, T]` + `padding_mask`."""

from __future__ import annotations

from ...processing_utils import ModalAudioFeatureExtractor


class DMCodecFeatureExtractor(ModalAudioFeatureExtractor):
    """Mono audio resampled to 16 kHz with torchaudio (as the original's `extract_rep.py`),
    stereo averaged, zero-padded to a multiple of the 320-sample hop (50 frames/s) with a
    `padding_mask`."""

    def __init__(self, sampling_rate: int = 16000, hop_length: int = 320, padding_value: float = 0.0, **kwargs):
        super().__init__(sampling_rate=sampling_rate, hop_length=hop_length, padding_value=padding_value, **kwargs)
