"""Evaluation protocols, pinned per family and written into every result.

Reported reconstruction numbers move a lot with the protocol (LlamaGen #34: rFID 4.28 vs 2.11
for the same reconstructions; 1d-tokenizer #105), so `modalzoo eval` never leaves it implicit:
`protocol_for(model)` starts from the modality's defaults, applies the family's pinned entries
from `FAMILY_PROTOCOLS` and the model's own facts (resolution, sampling rate), and the result
JSON carries the whole dict. Entries that drive the computation:

image: `image_size`, `resample`, `center_crop` (set on the processor before preprocessing),
    `lpips_net`, `batch_size`;
audio: `sampling_rate` (the model's; inputs are resampled to it), `metric_sampling_rate` (PESQ
    and STOI), `max_seconds` (inputs cropped to it; None keeps whole items), `batch_size`.

The other entries describe the fixed parts (what is compared with what, the metric variants)
and `reference_set`, the data the family's published numbers use. A family without an entry
gets its modality's defaults; family engineers add theirs here.
"""

from __future__ import annotations

import copy
from typing import Any

MODALITY_PROTOCOLS: dict[str, dict[str, Any]] = {
    "image": {
        "resample": "bicubic",
        "center_crop": True,
        "preprocessing": "shorter side resized to image_size, centre crop, pixels in [0, 1]",
        "reference": "the preprocessed input at the model's resolution",
        "quantization": "reconstruction clamped to [0, 1] and rounded to 8 bits",
        "psnr": "per image, data range 1, averaged over images",
        "ssim": "Gaussian 11x11 window, sigma 1.5, RGB, averaged over images",
        "lpips_net": "alex",
        "rfid": "torchmetrics FID: Inception-v3 pool3 (2048-d, torch-fidelity weights), uint8 reconstructions vs. uint8 inputs",
        "batch_size": 16,
        "reference_set": None,
    },
    "audio": {
        "preprocessing": "mono (channels averaged), resampled to the model's rate with torchaudio",
        "reference": "the preprocessed input at the model's rate, trimmed to its own length",
        "metric_sampling_rate": 16000,
        "pesq": "ITU-T P.862 via the pesq package, wb and nb modes, both signals resampled to 16 kHz",
        "stoi": "pystoi (not extended) at metric_sampling_rate",
        "si_sdr": "zero-mean scale-invariant SDR (dB), at the model's rate",
        "mel_distance": "descript-audio-codec mel distance: L1 of log10 mel magnitudes, 7 scales (windows 32-2048)",
        "stft_distance": "Parallel WaveGAN multi-resolution STFT distance: spectral convergence + log-magnitude L1",
        "max_seconds": None,
        # One item per batch: every item is encoded alone, so non-causal encoders see no padding.
        "batch_size": 1,
        "reference_set": None,
    },
}
MODALITY_PROTOCOLS["speech"] = copy.deepcopy(MODALITY_PROTOCOLS["audio"])

FAMILY_PROTOCOLS: dict[str, dict[str, Any]] = {
    "reference_image": {"reference_set": "none (a test tokenizer without published numbers)"},
    "reference_audio": {"reference_set": "none (a test tokenizer without published numbers)"},
    # TiTok's and One-D-Piece's eval transform: Resize(256, bicubic) + CenterCrop(256); rFID
    # against the 50k inputs themselves (1d-tokenizer evaluator).
    "titok": {"resample": "bicubic", "center_crop": True, "reference_set": "ImageNet-1k validation (50,000 images)"},
    "one_d_piece": {"resample": "bicubic", "center_crop": True, "reference_set": "ImageNet-1k validation (50,000 images)"},
    # WavTokenizer's tables: LibriTTS test-clean at 24 kHz, PESQ/STOI at 16 kHz.
    "wavtokenizer": {"metric_sampling_rate": 16000, "reference_set": "LibriTTS test-clean"},
    # DM-Codec's tables (WER/WIL, ViSQOL, STOI): LibriSpeech test-clean at 16 kHz.
    "dm_codec": {"metric_sampling_rate": 16000, "reference_set": "LibriSpeech test-clean"},
}


def protocol_for(model, **overrides) -> dict[str, Any]:
    """The full protocol for `model` (a ModalTokenizer); `overrides` replace pinned entries and
    are listed under `overridden` so a result says when it departs from the family's protocol."""
    modality = model.modality
    if modality not in MODALITY_PROTOCOLS:
        raise ValueError(f"no evaluation protocol for modality {modality!r} yet")
    family = model.config.model_type
    protocol: dict[str, Any] = {"modality": modality, "family": family}
    protocol.update(copy.deepcopy(MODALITY_PROTOCOLS[modality]))
    protocol.update(copy.deepcopy(FAMILY_PROTOCOLS.get(family, {})))
    if modality == "image":
        protocol["image_size"] = int(model.config.image_size)
    else:
        protocol["sampling_rate"] = int(model.config.sampling_rate)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    fixed = set(overrides) & {"modality", "family", "image_size", "sampling_rate"}
    if fixed:
        raise ValueError(f"{sorted(fixed)} are facts of the model, not protocol choices")
    unknown = set(overrides) - set(protocol)
    if unknown:
        raise ValueError(f"unknown protocol entries {sorted(unknown)} for {modality}; known: {sorted(protocol)}")
    protocol.update(overrides)
    if overrides:
        protocol["overridden"] = sorted(overrides)
    return protocol
