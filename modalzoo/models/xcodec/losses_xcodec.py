"""X-Codec's training losses (`losses/`, `modules/discriminators/frequency_discriminator.py`,
`modules/commons/pqmf.py` of zhenye234/xcodec, config `codec_16k_6kbps_v3_vqdp.yaml`).

Generator: full-band multi-resolution STFT loss (spectral convergence + log-magnitude L1 at
FFT 512/1024/2048), the same on the 6 bands of a PQMF analysis (FFT 128/256/256), MSE-GAN against
the multi-frequency discriminator, feature matching (x20), RVQ commitment (x1) and the MSE of the
semantic decoder against the frozen teacher's features (x100). Discriminator: least squares.

Windows and filters are computed on the fly (they are a few hundred numbers), so these modules
hold no buffers: nothing of them reaches a checkpoint, and nothing needs restoring after a load.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FULL_BAND_RESOLUTIONS = ((512, 120, 480), (1024, 240, 960), (2048, 300, 1200))  # (fft, hop, window)
SUB_BAND_RESOLUTIONS = ((128, 20, 80), (256, 40, 120), (256, 50, 200))
PQMF_CUTOFF_RATIOS = {8: 0.07949452, 6: 0.10032791, 4: 0.13, 2: 0.25}


# ----- spectral losses ---------------------------------------------------------------------------
def stft_magnitude(signal: torch.Tensor, fft_size: int, hop_size: int, win_size: int) -> torch.Tensor:
    """`[B, T]` -> `[B, frames, fft_size // 2 + 1]`, floored at sqrt(1e-7) as the original."""
    window = torch.hann_window(win_size, device=signal.device, dtype=torch.float32)
    spectrum = torch.stft(signal.float(), fft_size, hop_size, win_size, window, return_complex=True)
    power = spectrum.real**2 + spectrum.imag**2
    return power.clamp_min(1e-7).sqrt().transpose(2, 1)


def multi_resolution_stft_loss(predicted: torch.Tensor, target: torch.Tensor, resolutions) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral convergence, log-magnitude L1), each averaged over `resolutions`."""
    convergence, magnitude = [], []
    for fft_size, hop_size, win_size in resolutions:
        predicted_mag = stft_magnitude(predicted, fft_size, hop_size, win_size)
        target_mag = stft_magnitude(target, fft_size, hop_size, win_size)
        convergence.append(torch.linalg.norm(target_mag - predicted_mag) / torch.linalg.norm(target_mag))
        magnitude.append(F.l1_loss(predicted_mag.log(), target_mag.log()))
    return sum(convergence) / len(convergence), sum(magnitude) / len(magnitude)


def pqmf_analysis_filters(num_bands: int, taps: int = 62, beta: float = 9.0, device=None) -> torch.Tensor:
    """Cosine-modulated Kaiser-window prototype filters, `[num_bands, 1, taps + 1]`."""
    cutoff_ratio = PQMF_CUTOFF_RATIOS.get(num_bands, 0.142)
    steps = torch.arange(taps + 1, dtype=torch.float64, device=device) - 0.5 * taps
    omega = math.pi * cutoff_ratio
    ideal = torch.sin(omega * steps) / (math.pi * steps)
    ideal[taps // 2] = cutoff_ratio  # the 0/0 at the centre tap
    prototype = ideal * torch.kaiser_window(taps + 1, periodic=False, beta=beta, dtype=torch.float64, device=device)
    bands = torch.arange(num_bands, dtype=torch.float64, device=device)[:, None]
    phase = (-1.0) ** bands * math.pi / 4
    filters = 2 * prototype * torch.cos((2 * bands + 1) * (math.pi / (2 * num_bands)) * steps + phase)
    return filters.float()[:, None]


def pqmf_analysis(signal: torch.Tensor, num_bands: int, taps: int = 62) -> torch.Tensor:
    """`[B, 1, T]` -> `[B, num_bands, T // num_bands]` (PQMF analysis then decimation)."""
    filters = pqmf_analysis_filters(num_bands, taps, device=signal.device).to(signal.dtype)
    bands = F.conv1d(F.pad(signal, (taps // 2, taps // 2)), filters)
    return bands[..., ::num_bands]


class XcodecGeneratorLoss(nn.Module):
    """The generator's spectral terms: `{"stft": sc + mag (full band), "subband_stft": sc + mag
    (PQMF bands)}` for `values` and `target` `[B, 1, T]`."""

    def __init__(self, *, sampling_rate: int = 16000, num_bands: int = 6):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.num_bands = num_bands

    def forward(self, values: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=values.device.type, enabled=False):
            values, target = values.float(), target.float()
            full_sc, full_mag = multi_resolution_stft_loss(values[:, 0], target[:, 0], FULL_BAND_RESOLUTIONS)
            predicted_bands = pqmf_analysis(values, self.num_bands)
            target_bands = pqmf_analysis(target, self.num_bands)
            sub_sc, sub_mag = multi_resolution_stft_loss(
                predicted_bands.reshape(-1, predicted_bands.shape[-1]),
                target_bands.reshape(-1, target_bands.shape[-1]),
                SUB_BAND_RESOLUTIONS,
            )
        return {"stft": full_sc + full_mag, "subband_stft": sub_sc + sub_mag}


def semantic_reconstruction_loss(
    predicted: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between the semantic decoder's output and the teacher features, `[B, H, F]` each,
    over real frames only."""
    target = target.detach()
    if frame_mask is None:
        return F.mse_loss(predicted, target)
    weight = frame_mask[:, None].to(predicted.dtype)
    return ((predicted - target) ** 2 * weight).sum() / (weight.sum() * predicted.shape[1]).clamp_min(1)


# ----- adversarial losses ------------------------------------------------------------------------
def mse_generator_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """MSE-GAN generator term: mean over sub-discriminators of mean((D(fake) - 1)^2)."""
    return sum(F.mse_loss(f.float(), torch.ones_like(f, dtype=torch.float32)) for f in fake_logits) / len(fake_logits)


def mse_discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares discriminator loss, averaged over sub-discriminators."""
    terms = [
        F.mse_loss(r.float(), torch.ones_like(r, dtype=torch.float32)) + F.mse_loss(f.float(), torch.zeros_like(f, dtype=torch.float32))
        for r, f in zip(real_logits, fake_logits)
    ]
    return sum(terms) / len(terms)


def feature_matching_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 over every hidden feature map of every sub-discriminator."""
    terms = [
        F.l1_loss(fake.float(), real.detach().float())
        for real_maps, fake_maps in zip(real_features, fake_features)
        for real, fake in zip(real_maps, fake_maps)
    ]
    return sum(terms) / len(terms)


# ----- the multi-frequency discriminator ---------------------------------------------------------
def mel_warp_matrix(num_bins: int, sampling_rate: int) -> torch.Tensor:
    """The original's `create_fb_matrix(n_freqs=num_bins, 0, sr // 2, n_mels=num_bins, sr)`:
    triangular mel filters as many as STFT bins, floored at 1e-6."""
    all_freqs = torch.linspace(0, sampling_rate // 2, num_bins)
    mel_max = 2595.0 * math.log10(1.0 + (sampling_rate // 2) / 700.0)
    mel_points = torch.linspace(0.0, mel_max, num_bins + 2)
    freq_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    widths = freq_points[1:] - freq_points[:-1]
    slopes = freq_points[None] - all_freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.min(down, up).clamp(1e-6, 1.0)


class FrequencyDiscriminator(nn.Module):
    """A 2-D conv stack over one (magnitude, log-magnitude) mel spectrogram; hidden channels
    `hidden / 32 ... hidden`, weight-normed 3x3 convs with reflection padding, LeakyReLU 0.2."""

    def __init__(self, in_channels: int, hidden_channels: int = 512):
        super().__init__()
        widths = [in_channels] + [hidden_channels // d for d in (32, 16, 8, 4, 2)] + [hidden_channels, 1]
        strides = (1, 2, 1, 2, 1, 2, 1)
        layers = []
        for index, stride in enumerate(strides):
            conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(widths[index], widths[index + 1], 3, stride=stride))
            parts = [nn.ReflectionPad2d(1), conv] if index == 0 else [nn.LeakyReLU(0.2), nn.ReflectionPad2d(1), conv]
            layers.append(nn.Sequential(*parts))
        self.layers = nn.ModuleList(layers)

    def forward(self, spectrogram: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden, features = spectrogram, []
        for layer in self.layers:
            hidden = layer(hidden)
            features.append(hidden)
        return hidden, features[:-1]


class MultiFrequencyDiscriminator(nn.Module):
    """X-Codec's only discriminator: one `FrequencyDiscriminator` per STFT resolution (hop h,
    FFT = window = 4h, normalised), on the mel-warped magnitude stacked with its clamped log
    (`domain: double`, `mel_scale: true`). `forward(values [B, 1, T])` -> (logits per
    resolution, hidden feature maps per resolution), the shared trainer's discriminator shape."""

    def __init__(
        self,
        *,
        hop_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024),
        hidden_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512),
        sampling_rate: int = 16000,
        ref_level_db: float = 20.0,
        min_level_db: float = -100.0,
    ):
        super().__init__()
        if len(hop_lengths) != len(hidden_channels):
            raise ValueError("hop_lengths and hidden_channels must have the same length")
        self.hop_lengths = tuple(int(h) for h in hop_lengths)
        self.sampling_rate = sampling_rate
        self.ref_level_db = ref_level_db
        self.min_level_db = min_level_db
        self.discriminators = nn.ModuleList(FrequencyDiscriminator(2, int(c)) for c in hidden_channels)
        self._warps: dict[tuple, torch.Tensor] = {}

    def _warp(self, num_bins: int, device) -> torch.Tensor:
        key = (num_bins, str(device))
        if key not in self._warps:
            self._warps[key] = mel_warp_matrix(num_bins, self.sampling_rate).to(device)
        return self._warps[key]

    def spectrogram(self, signal: torch.Tensor, hop: int) -> torch.Tensor:
        """`[B, T]` -> `[B, 2, bins, frames]`: mel-warped magnitude and its clamped dB value."""
        with torch.autocast(device_type=signal.device.type, enabled=False):
            window = torch.hann_window(4 * hop, device=signal.device)
            spectrum = torch.stft(signal.float(), 4 * hop, hop, 4 * hop, window, normalized=True, return_complex=True)
            magnitude = (spectrum.real**2 + spectrum.imag**2).clamp_min(1e-7).sqrt()
            magnitude = torch.matmul(magnitude.transpose(1, 2), self._warp(magnitude.shape[1], signal.device)).transpose(1, 2)
            decibels = 20 * torch.log10(magnitude) - self.ref_level_db
            decibels = ((decibels - self.min_level_db) / -self.min_level_db).clamp(0, 1)
        return torch.stack([magnitude, decibels], dim=1)

    def forward(self, values: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        signal = values.reshape(-1, values.shape[-1])
        logits, features = [], []
        for hop, discriminator in zip(self.hop_lengths, self.discriminators):
            output, maps = discriminator(self.spectrogram(signal, hop))
            logits.append(output)
            features.append(maps)
        return logits, features
