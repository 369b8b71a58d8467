"""X-Codec feature extractor: mono 16 kHz, `input_values` `[B, 1, T]` + `padding_mask`."""

from __future__ import annotations

from ...processing_utils import ModalAudioFeatureExtractor


class XcodecFeatureExtractor(ModalAudioFeatureExtractor):
    """Mono audio resampled to 16 kHz (torchaudio), stereo averaged, zero-padded to a multiple of
    the 320-sample hop with a `padding_mask`, as transformers' `DacFeatureExtractor` prepares
    X-Codec input (and reading its `preprocessor_config.json` from an `hf-audio/xcodec-*` folder).
    Samples are not rescaled: the original inference script's 0.95 gain is the caller's choice."""

    def __init__(self, sampling_rate: int = 16000, hop_length: int = 320, padding_value: float = 0.0, **kwargs):
        for name in ("feature_extractor_type", "processor_class", "return_attention_mask", "padding_side"):
            kwargs.pop(name, None)
        super().__init__(sampling_rate=sampling_rate, hop_length=hop_length, padding_value=padding_value, **kwargs)
