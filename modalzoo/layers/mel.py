"""Log-mel L1 reconstruction loss (Vocos / WavTokenizer / HiFi-GAN style).

The window and mel filterbank are non-persistent computed buffers, so the loss adds nothing to a
model's state dict and `from_pretrained` restores them (`ComputedBuffers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ..modeling_utils import ComputedBuffers


class MelSpectrogramLoss(nn.Module, ComputedBuffers):
    """L1 between `log(clip(mel, 1e-7))` of prediction and target; magnitude (power 1) mels with
    torchaudio's defaults (HTK scale, no filter normalisation, centred reflect-padded frames)."""

    def __init__(self, *, sampling_rate: int = 24000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 100):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.register_buffer("window", torch.empty(n_fft), persistent=False)
        self.register_buffer("filterbank", torch.empty(n_fft // 2 + 1, n_mels), persistent=False)
        if self.window.device.type != "meta":
            with torch.no_grad():
                for name, value in self.computed_buffers().items():
                    self.get_buffer(name).copy_(value)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        # Built on the CPU even under a meta default device (the filterbank checks its values).
        with torch.device("cpu"):
            filterbank = torchaudio.functional.melscale_fbanks(
                self.n_fft // 2 + 1, f_min=0.0, f_max=self.sampling_rate / 2, n_mels=self.n_mels,
                sample_rate=self.sampling_rate,
            )
            return {"window": torch.hann_window(self.n_fft), "filterbank": filterbank}

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """`[B, 1, T]` or `[B, T]` -> `[B, n_mels, frames]`."""
        audio = audio.reshape(-1, audio.shape[-1]).float()
        spec = torch.stft(
            audio, self.n_fft, self.hop_length, window=self.window.float(), center=True, pad_mode="reflect",
            return_complex=True,
        ).abs()
        mel = torch.matmul(spec.transpose(1, 2), self.filterbank.float()).transpose(1, 2)
        return torch.log(mel.clip(min=1e-7))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.log_mel(prediction), self.log_mel(target))
