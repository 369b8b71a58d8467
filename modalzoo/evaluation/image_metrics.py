"""Image reconstruction metrics: PSNR, SSIM, LPIPS and rFID, all from torchmetrics.

Conventions (the ones TiTok, LlamaGen, TokenBench and most tokenizer papers report):

* every image is compared at the model's resolution, in [0, 1], after the reconstruction is
  clamped and rounded to 8 bits (what saving it as a PNG would do);
* PSNR is computed per image (data range 1) and averaged over images;
* SSIM is the Gaussian 11x11, sigma 1.5 SSIM of Wang et al. on the RGB channels, averaged;
* LPIPS uses the AlexNet backbone (the lpips package's default), inputs in [0, 1];
* rFID is the Frechet distance between Inception-v3 pool features (2048-d, the TF-ported
  weights of pytorch-fid / torch-fidelity) of the reconstructions and of the inputs they came
  from, fed as uint8.

LPIPS and rFID need pretrained weights, which torchvision / torch-fidelity download into the
torch hub cache on first use. When they cannot be loaded (offline, package missing), the metric
is reported as unavailable with the reason instead of failing the whole evaluation.
"""

from __future__ import annotations

import torch

IMAGE_METRICS = ("psnr", "ssim", "lpips", "rfid")


def quantize_to_uint8_grid(images: torch.Tensor) -> torch.Tensor:
    """Float images -> the nearest 8-bit values, still float in [0, 1]."""
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round() / 255.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def psnr_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(reconstruction, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        reconstruction, reference, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11, reduction="none"
    )


def build_lpips(device: str | torch.device = "cpu", net_type: str = "alex"):
    """torchmetrics' LPIPS; loads torchvision ImageNet weights and the lpips linear heads."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True).to(device)


def build_fid(device: str | torch.device = "cpu"):
    """torchmetrics' FID on Inception-v3 pool3 features; loads torch-fidelity's weights."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=2048, normalize=False).to(device)


def _unavailable_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, (ImportError, ModuleNotFoundError)):
        return f"package missing: {text}"
    return f"pretrained weights could not be loaded ({type(error).__name__}: {text})"


class ImageMetrics:
    """Accumulates image metrics over batches of `[B, 3, H, W]` images in [0, 1].

    `unavailable` maps a requested metric that cannot run here to the reason.
    """

    def __init__(self, metrics=IMAGE_METRICS, *, device: str | torch.device = "cpu", lpips_net: str = "alex"):
        unknown = set(metrics) - set(IMAGE_METRICS)
        if unknown:
            raise ValueError(f"unknown image metrics {sorted(unknown)}; choose from {IMAGE_METRICS}")
        self.metrics = tuple(metrics)
        self.device = torch.device(device)
        self.unavailable: dict[str, str] = {}
        self._sums = {"psnr": 0.0, "ssim": 0.0}
        self._count = 0
        self._lpips = self._try_build("lpips", lambda: build_lpips(self.device, lpips_net))
        self._fid = self._try_build("rfid", lambda: build_fid(self.device))

    def _try_build(self, name, build):
        if name not in self.metrics:
            return None
        try:
            return build()
        except (OSError, ImportError, RuntimeError, ValueError) as error:  # URLError is an OSError
            self.unavailable[name] = _unavailable_reason(error)
            return None

    @torch.no_grad()
    def update(self, reference: torch.Tensor, reconstruction: torch.Tensor) -> None:
        if reference.shape != reconstruction.shape or reference.ndim != 4 or reference.shape[1] != 3:
            raise ValueError(
                f"expected reference and reconstruction [B, 3, H, W] of one shape, got "
                f"{tuple(reference.shape)} and {tuple(reconstruction.shape)}"
            )
        reference = quantize_to_uint8_grid(reference).to(self.device)
        reconstruction = quantize_to_uint8_grid(reconstruction).to(self.device)
        if "psnr" in self.metrics:
            self._sums["psnr"] += float(psnr_per_image(reference, reconstruction).double().sum())
        if "ssim" in self.metrics:
            self._sums["ssim"] += float(ssim_per_image(reference, reconstruction).double().sum())
        if self._lpips is not None:
            self._lpips.update(reconstruction, reference)
        if self._fid is not None:
            self._fid.update(to_uint8(reference), real=True)
            self._fid.update(to_uint8(reconstruction), real=False)
        self._count += reference.shape[0]

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            raise ValueError("no images were evaluated")
        results = {name: self._sums[name] / self._count for name in ("psnr", "ssim") if name in self.metrics}
        if self._lpips is not None:
            results["lpips"] = float(self._lpips.compute())
        if self._fid is not None:
            if self._count < 2:
                self.unavailable["rfid"] = "needs at least 2 images (a covariance per set)"
            else:
                results["rfid"] = float(self._fid.compute())
        return results
