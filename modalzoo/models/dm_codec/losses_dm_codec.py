"""DM-Codec's generator loss terms (`codec/trainer/loss.py` and `trainer.py` of
mubtasimahasan/DM-Codec): time-domain L1, multi-scale log-mel L1 and the "d-axis" distillation
loss on the first RVQ stage; plus the original's least-squares GAN terms, written against the
discriminator output layout of `modalzoo.training` (lists of logits and of feature-map lists).

Filterbanks and windows are computed on the fly (a few thousand numbers), so nothing here holds
state that a checkpoint would carry or a load would have to restore.
"""

from __future__ import annotations

import re
import warnings

import torch
import torch.nn.functional as F
import torchaudio


# ----- reconstruction -------------------------------------------------------------------------
def reconstruction_loss(target: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """L1 between waveforms `[B, 1, T]`, over the shorter length (the original's `recon_loss`)."""
    length = min(target.shape[-1], predicted.shape[-1])
    return F.l1_loss(target[..., :length], predicted[..., :length])


def log_mel_spectrogram(
    audio: torch.Tensor, *, n_fft: int, num_mels: int, sampling_rate: int, hop_length: int, win_length: int,
    fmin: float = 0.0, fmax: float | None = None,
) -> torch.Tensor:
    """`[B, T]` -> `[B, num_mels, frames]`: HiFi-GAN's mel (reflect padding of (n_fft - hop) / 2
    on both sides, no centring, |STFT| + 1e-9, Slaney-normalised HTK filterbank, log clamped at
    1e-5), as the original's `mel_spectrogram`."""
    audio = audio.float()
    with warnings.catch_warnings():
        # 80 mels over the 65 bins of the smallest scale leave empty filters, in the original too
        warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
        fbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min=float(fmin), f_max=float(sampling_rate // 2 if fmax is None else fmax),
            n_mels=num_mels, sample_rate=sampling_rate, norm="slaney", mel_scale="htk",
        ).T.to(audio.device)
    pad = int((n_fft - hop_length) / 2)
    audio = F.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win_length, device=audio.device)
    spectrum = torch.stft(
        audio, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=False,
        normalized=False, onesided=True, return_complex=True,
    )
    magnitude = spectrum.abs() + 1e-9
    return torch.log(torch.clamp(fbank @ magnitude, min=1e-5))


def mel_loss(target: torch.Tensor, predicted: torch.Tensor, **mel_kwargs) -> torch.Tensor:
    target_mel = log_mel_spectrogram(target.squeeze(1), **mel_kwargs)
    predicted_mel = log_mel_spectrogram(predicted.squeeze(1), **mel_kwargs)
    length = min(target_mel.shape[-1], predicted_mel.shape[-1])
    return F.l1_loss(target_mel[..., :length], predicted_mel[..., :length])


def multi_scale_mel_settings(config) -> list[dict]:
    """The original's `mel_loss_kwargs_list`: scale k halves n_fft, hop and window k times."""
    return [
        dict(
            n_fft=config.mel_n_fft // 2**k, num_mels=config.num_mels, sampling_rate=config.sampling_rate,
            hop_length=config.mel_hop_length // 2**k, win_length=config.mel_win_length // 2**k,
            fmin=config.mel_fmin, fmax=config.mel_fmax,
        )
        for k in range(len(config.mel_loss_lambdas))
    ]


def multi_scale_mel_loss(target: torch.Tensor, predicted: torch.Tensor, config) -> torch.Tensor:
    """sum_k lambda_k * mel_loss at scale k (lambdas [45, 1, 1, 1] in the released config)."""
    terms = [
        weight * mel_loss(target, predicted, **settings)
        for weight, settings in zip(config.mel_loss_lambdas, multi_scale_mel_settings(config))
    ]
    return sum(terms)


# ----- distillation ------------------------------------------------------------------------------
def d_axis_distill_loss(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SpeechTokenizer's "D-axis" loss: for each feature dimension d, the cosine similarity of
    the student's and the teacher's time series over the first min(T_student, T_teacher) frames;
    the loss is -log sigmoid of it, averaged over batch and dimensions. `[B, T, D]` each."""
    frames = min(feature.shape[1], target.shape[1])
    similarity = F.cosine_similarity(feature[:, :frames].float(), target[:, :frames].float(), dim=1)
    return -F.logsigmoid(similarity).mean()


def combine_distill_losses(
    teacher: str, speech_loss: torch.Tensor | None, text_loss: torch.Tensor | None,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """The original's weighting: "llm" -> text term, "hubert" -> speech term, "combined" ->
    their mean, or `weights[0] * speech + weights[1] * text` (its `combined_<w_sm>_<w_lm>`)."""
    if teacher == "llm":
        return text_loss
    if teacher == "hubert":
        return speech_loss
    if teacher == "combined":
        if weights is None:
            return (speech_loss + text_loss) / 2
        return speech_loss * weights[0] + text_loss * weights[1]
    raise ValueError(f"unknown distillation teacher {teacher!r}")


def parse_original_teacher(name: str) -> tuple[str, list[float] | None]:
    """The original trainer's `--teacher` value -> (distill_teacher, distill_weights):
    "llm", "hubert", "combined" or "combined_0.5_0.5"."""
    match = re.fullmatch(r"combined_(\d*\.?\d+)_(\d*\.?\d+)", name)
    if match:
        return "combined", [float(match.group(1)), float(match.group(2))]
    for teacher in ("combined", "llm", "hubert"):
        if name.startswith(teacher):
            return teacher, None
    raise ValueError(f"unknown original teacher {name!r} (llm, hubert, combined or combined_<w_sm>_<w_lm>)")


# ----- the original's least-squares GAN terms -----------------------------------------------------
def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """sum over sub-discriminators of mean (1 - D(x))^2 + mean D(G(z))^2."""
    return sum(((1 - real.float()) ** 2).mean() + (fake.float() ** 2).mean() for real, fake in zip(real_logits, fake_logits))


def adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """sum over sub-discriminators of mean (1 - D(G(z)))^2."""
    return sum(((1 - fake.float()) ** 2).mean() for fake in fake_logits)


def feature_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """2 x the sum over every feature map of the mean |real - fake| (HiFi-GAN's feature matching)."""
    return 2 * sum(
        (real.float() - fake.float()).abs().mean()
        for real_maps, fake_maps in zip(real_features, fake_features)
        for real, fake in zip(real_maps, fake_maps)
    )
