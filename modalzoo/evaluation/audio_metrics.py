"""Audio reconstruction metrics: PESQ (wb, nb), STOI, SI-SDR, mel distance and multi-resolution
STFT distance.

PESQ, STOI and SI-SDR come from torchmetrics (which wraps the reference `pesq` (ITU-T P.862)
and `pystoi` packages); the two spectral distances have no maintained library implementation
that matches the codec papers' definitions, so they are written here after the papers' code:

* `mel_distance` is descript-audio-codec's mel distance, the one DAC, SNAC and most codec tables
  report: L1 between log10 magnitude mel spectrograms (clamped at 1e-5), summed over seven
  scales (windows 32..2048 samples, hop = window / 4, 5..320 Slaney mels, Hann window);
* `stft_distance` is Parallel WaveGAN's multi-resolution STFT distance (the default of
  auraloss): spectral convergence plus L1 of log magnitudes, each averaged over the FFT sizes
  (1024, 2048, 512) with hops (120, 240, 50) and windows (600, 1200, 240).

Conventions: every item is compared with the input it came from (after the processor's
resampling to the model's rate); PESQ and STOI run at 16 kHz (both signals resampled), as
WavTokenizer and most codec papers compute them; SI-SDR uses zero-mean signals (Le Roux et al.).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio

AUDIO_METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance", "stft_distance")

MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
STFT_FFT_SIZES = (1024, 2048, 512)
STFT_HOPS = (120, 240, 50)
STFT_WINDOWS = (600, 1200, 240)


def _as_batch(signal: torch.Tensor) -> torch.Tensor:
    signal = torch.as_tensor(signal).detach().float()
    if signal.ndim == 1:
        return signal[None]
    if signal.ndim == 3 and signal.shape[1] == 1:
        return signal[:, 0]
    if signal.ndim != 2:
        raise ValueError(f"expected audio [samples], [batch, samples] or [batch, 1, samples], got {tuple(signal.shape)}")
    return signal


@functools.lru_cache(maxsize=64)
def _mel_filters(n_fft: int, n_mels: int, sampling_rate: int) -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, f_min=0.0, f_max=sampling_rate / 2, n_mels=n_mels, sample_rate=sampling_rate,
        norm="slaney", mel_scale="slaney",
    )


def _magnitude(signal: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    spectrum = torch.stft(
        signal, n_fft=n_fft, hop_length=hop, win_length=window, window=torch.hann_window(window, device=signal.device),
        center=True, pad_mode="reflect", return_complex=True,
    )
    return spectrum.abs()


def mel_distance(reference: torch.Tensor, reconstruction: torch.Tensor, sampling_rate: int) -> torch.Tensor:
    """DAC's multi-scale log-mel L1 distance, one value per item (0 for identical signals)."""
    reference, reconstruction = _as_batch(reference), _as_batch(reconstruction)
    total = reference.new_zeros(reference.shape[0])
    for window, n_mels in zip(MEL_WINDOWS, MEL_BANDS):
        filters = _mel_filters(window, n_mels, int(sampling_rate)).to(reference.device)
        mels = [
            (_magnitude(signal, window, window // 4, window).transpose(1, 2) @ filters).clamp_min(1e-5).log10()
            for signal in (reference, reconstruction)
        ]
        total += (mels[0] - mels[1]).abs().mean(dim=(1, 2))
    return total


def stft_distance(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Parallel WaveGAN's multi-resolution STFT distance (spectral convergence + log-magnitude
    L1), one value per item (0 for identical signals)."""
    reference, reconstruction = _as_batch(reference), _as_batch(reconstruction)
    convergence = reference.new_zeros(reference.shape[0])
    log_magnitude = reference.new_zeros(reference.shape[0])
    for n_fft, hop, window in zip(STFT_FFT_SIZES, STFT_HOPS, STFT_WINDOWS):
        target = _magnitude(reference, n_fft, hop, window).clamp_min(1e-7 ** 0.5)
        estimate = _magnitude(reconstruction, n_fft, hop, window).clamp_min(1e-7 ** 0.5)
        convergence += torch.linalg.norm((target - estimate).flatten(1), dim=1) / torch.linalg.norm(
            target.flatten(1), dim=1
        ).clamp_min(1e-12)
        log_magnitude += (target.log() - estimate.log()).abs().mean(dim=(1, 2))
    return (convergence + log_magnitude) / len(STFT_FFT_SIZES)


def si_sdr(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB (zero-mean), one value per item."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    reference, reconstruction = _as_batch(reference).double(), _as_batch(reconstruction).double()
    return scale_invariant_signal_distortion_ratio(reconstruction, reference, zero_mean=True).float()


def resample(signal: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    if int(from_rate) == int(to_rate):
        return signal
    return torchaudio.functional.resample(signal, int(from_rate), int(to_rate))


def pesq(reference: torch.Tensor, reconstruction: torch.Tensor, sampling_rate: int, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862.2 wide band or P.862 narrow band) of one item at 16 kHz."""
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    reference = resample(_as_batch(reference)[0], sampling_rate, 16000)
    reconstruction = resample(_as_batch(reconstruction)[0], sampling_rate, 16000)
    with np.errstate(divide="ignore", invalid="ignore"):  # pesq normalises silence to NaN, then raises
        return float(perceptual_evaluation_speech_quality(reconstruction, reference, fs=16000, mode=mode))


def stoi(reference: torch.Tensor, reconstruction: torch.Tensor, sampling_rate: int, metric_rate: int = 16000) -> float:
    """Short-time objective intelligibility (pystoi, not extended) of one item."""
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    reference = resample(_as_batch(reference)[0], sampling_rate, metric_rate)
    reconstruction = resample(_as_batch(reconstruction)[0], sampling_rate, metric_rate)
    return float(short_time_objective_intelligibility(reconstruction, reference, fs=metric_rate))


def _check_package(name: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return f"package missing: pip install {name} (or modalzoo[eval])"
    return None


class AudioMetrics:
    """Accumulates per-item audio metrics; `compute()` returns their means.

    Items that PESQ rejects (no utterance detected, too short) are left out of its mean and
    counted in `notes`; `unavailable` maps a requested metric that cannot run here to why.
    """

    def __init__(self, sampling_rate: int, metrics=AUDIO_METRICS, *, metric_sampling_rate: int = 16000):
        unknown = set(metrics) - set(AUDIO_METRICS)
        if unknown:
            raise ValueError(f"unknown audio metrics {sorted(unknown)}; choose from {AUDIO_METRICS}")
        self.sampling_rate = int(sampling_rate)
        self.metric_sampling_rate = int(metric_sampling_rate)
        self.unavailable: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        requested = list(metrics)
        for name, package in (("pesq_wb", "pesq"), ("pesq_nb", "pesq"), ("stoi", "pystoi")):
            reason = _check_package(package) if name in requested else None
            if reason:
                self.unavailable[name] = reason
        if self.sampling_rate < 16000:
            for name in ("pesq_wb",):
                if name in requested:
                    self.unavailable[name] = f"wide-band PESQ needs audio of at least 16 kHz, the model produces {self.sampling_rate} Hz"
        self.metrics = tuple(name for name in requested if name not in self.unavailable)
        self._values: dict[str, list[float]] = {name: [] for name in self.metrics}
        self._failures: dict[str, list[str]] = {}

    @torch.no_grad()
    def update(self, reference: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """One item: 1-D reference and reconstruction at `sampling_rate`, of the same length."""
        reference, reconstruction = _as_batch(reference).cpu(), _as_batch(reconstruction).cpu()
        if reference.shape != reconstruction.shape or reference.shape[0] != 1:
            raise ValueError(f"expected one item of equal lengths, got {tuple(reference.shape)} and {tuple(reconstruction.shape)}")
        for name in self.metrics:
            try:
                value = self._one(name, reference, reconstruction)
            except Exception as error:  # pesq raises its own error types for unusable items
                self._failures.setdefault(name, []).append(str(error).strip().splitlines()[0] if str(error) else type(error).__name__)
                continue
            self._values[name].append(value)

    def _one(self, name: str, reference: torch.Tensor, reconstruction: torch.Tensor) -> float:
        if name == "pesq_wb":
            return pesq(reference, reconstruction, self.sampling_rate, "wb")
        if name == "pesq_nb":
            return pesq(reference, reconstruction, self.sampling_rate, "nb")
        if name == "stoi":
            return stoi(reference, reconstruction, self.sampling_rate, self.metric_sampling_rate)
        if name == "si_sdr":
            return float(si_sdr(reference, reconstruction)[0])
        if name == "mel_distance":
            return float(mel_distance(reference, reconstruction, self.sampling_rate)[0])
        return float(stft_distance(reference, reconstruction)[0])

    def compute(self) -> dict[str, float]:
        results = {}
        for name in self.metrics:
            values = self._values[name]
            failures = self._failures.get(name, [])
            if failures:
                self.notes[name] = f"{len(failures)} item(s) left out: {failures[0]}"
            if values:
                results[name] = float(sum(values) / len(values))
            elif failures:
                self.unavailable[name] = f"no item could be scored: {failures[0]}"
        return results
