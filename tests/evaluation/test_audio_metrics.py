import numpy as np
import pytest
import torch

from modalzoo.evaluation import AudioMetrics, mel_distance, pesq, si_sdr, stft_distance, stoi
from modalzoo.evaluation.audio_metrics import resample


@pytest.fixture(scope="module")
def utterance(speech) -> tuple[torch.Tensor, int]:
    """The shorter real utterance, at 16 kHz."""
    clips, rate = speech
    clip = torch.from_numpy(min(clips, key=len).astype(np.float32))
    return resample(clip, rate, 16000), 16000


def with_noise(signal: torch.Tensor, snr_db: float, seed: int) -> torch.Tensor:
    noise = torch.randn(signal.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise * signal.norm() / noise.norm() / 10 ** (snr_db / 20)
    return signal + noise


def test_si_sdr_ignores_scale_and_equals_the_snr_of_orthogonal_noise(utterance):
    clean, _ = utterance
    clean = clean - clean.mean()
    assert float(si_sdr(clean, 0.5 * clean)[0]) > 100  # exact up to float64 rounding

    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)).double()
    noise -= noise.mean()
    noise -= (noise @ clean.double()) / (clean.double() @ clean.double()) * clean.double()  # orthogonal to clean
    noise *= clean.double().norm() / noise.norm() / 10 ** (10 / 20)  # 10 dB below the signal
    assert float(si_sdr(clean, 3.0 * (clean.double() + noise).float())[0]) == pytest.approx(10.0, abs=1e-3)


def test_spectral_distances_are_zero_for_identical_signals_and_grow_with_noise(utterance):
    clean, rate = utterance
    light, heavy = with_noise(clean, 30, 1), with_noise(clean, 0, 2)
    assert float(mel_distance(clean, clean, rate)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(stft_distance(clean, clean)[0]) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(mel_distance(clean, light, rate)[0]) < float(mel_distance(clean, heavy, rate)[0])
    assert 0 < float(stft_distance(clean, light)[0]) < float(stft_distance(clean, heavy)[0])
    batch = torch.stack([light, heavy])[:, None]  # [B, 1, T] as decoders return it
    assert mel_distance(torch.stack([clean, clean])[:, None], batch, rate).shape == (2,)


def test_pesq_and_stoi_order_real_speech_by_degradation(utterance):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    clean, rate = utterance
    light, heavy = with_noise(clean, 25, 3), with_noise(clean, 0, 4)
    assert pesq(clean, clean, rate, "wb") > 4.4  # the scale's ceiling is 4.64
    assert pesq(clean, light, rate, "wb") > pesq(clean, heavy, rate, "wb")
    assert pesq(clean, light, rate, "nb") > pesq(clean, heavy, rate, "nb")
    assert stoi(clean, clean, rate) == pytest.approx(1.0, abs=1e-3)
    assert 1.0 > stoi(clean, light, rate) > stoi(clean, heavy, rate)


def test_accumulator_averages_items_and_notes_items_pesq_rejects(speech):
    pytest.importorskip("pesq")
    clips, rate = speech
    clip = torch.from_numpy(min(clips, key=len).astype(np.float32))
    metrics = AudioMetrics(rate, ["pesq_wb", "si_sdr"])
    metrics.update(clip, with_noise(clip, 20, 5))
    metrics.update(clip, with_noise(clip, 10, 6))
    metrics.update(torch.zeros(rate // 2), torch.zeros(rate // 2))  # silence: PESQ finds no utterance
    results = metrics.compute()
    assert set(results) == {"pesq_wb", "si_sdr"}
    assert "1 item(s) left out" in metrics.notes["pesq_wb"]
    # every item counts for SI-SDR: about 20, 10 and 0 dB (silence against silence)
    assert results["si_sdr"] == pytest.approx(10.0, abs=1.0)


def test_wide_band_pesq_is_unavailable_below_16_khz():
    metrics = AudioMetrics(8000, ["pesq_wb", "mel_distance"])
    assert "16 kHz" in metrics.unavailable["pesq_wb"]
    assert metrics.metrics == ("mel_distance",)
