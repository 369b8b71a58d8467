import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modalzoo.evaluation import ImageMetrics
from modalzoo.evaluation.image_metrics import psnr_per_image, ssim_per_image

LPIPS_WEIGHTS = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, LPIPS' backbone
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's Inception-v3


def cached(filename: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def as_unit(images: list[np.ndarray], size: int = 128) -> torch.Tensor:
    """Photographs cropped to `size` as a float batch in [0, 1] (gray repeated to RGB)."""
    batch = []
    for image in images:
        image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
        batch.append(torch.from_numpy(image[:size, :size].copy()).permute(2, 0, 1).float() / 255.0)
    return torch.stack(batch)


def test_psnr_of_a_known_mse_per_image_then_averaged():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randint(16, 240, (2, 3, 32, 32), generator=generator).float() / 255.0
    offsets = torch.tensor([8.0, 2.0]).view(2, 1, 1, 1) / 255.0  # on the 8-bit grid: rounding keeps them
    reconstruction = reference + offsets
    expected = [20 * math.log10(255 / 8), 20 * math.log10(255 / 2)]  # 10 log10(1 / MSE)
    assert psnr_per_image(reference, reconstruction).tolist() == pytest.approx(expected, abs=1e-4)
    metrics = ImageMetrics(["psnr"])
    metrics.update(reference, reconstruction)
    assert metrics.compute()["psnr"] == pytest.approx(sum(expected) / 2, abs=1e-4)


def test_ssim_is_one_for_identical_images_and_matches_scikit_image(photographs):
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    reference = as_unit(photographs)
    assert ssim_per_image(reference, reference).tolist() == pytest.approx([1.0] * 3, abs=1e-6)

    noisy = (reference + 0.05 * torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = ssim_per_image(reference, noisy)
    for index in range(3):
        # The same definition (Gaussian window, sigma 1.5, population covariance), another code base.
        expected = structural_similarity(
            reference[index].permute(1, 2, 0).numpy(), noisy[index].permute(1, 2, 0).numpy(), channel_axis=-1,
            data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert float(ours[index]) == pytest.approx(expected, abs=2e-2)
    more_noise = (reference + 0.2 * torch.randn(reference.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert (ssim_per_image(reference, more_noise) < ours).all()


def test_metrics_quantize_reconstructions_to_eight_bits():
    reference = torch.full((1, 3, 16, 16), 100 / 255)
    almost = reference + 0.4 / 255  # rounds back to the reference: what a saved PNG would hold
    metrics = ImageMetrics(["psnr", "ssim"])
    metrics.update(reference, almost)
    assert math.isinf(metrics.compute()["psnr"])


@pytest.mark.skipif(not cached(LPIPS_WEIGHTS), reason=f"LPIPS needs torchvision's AlexNet weights ({LPIPS_WEIGHTS}) in the torch hub cache; no download offline")
def test_lpips_is_zero_for_identical_images_and_grows_with_noise(photographs):
    reference = as_unit(photographs, 64)
    noisy = (reference + 0.1 * torch.randn(reference.shape)).clamp(0, 1)
    same, degraded = ImageMetrics(["lpips"]), ImageMetrics(["lpips"])
    same.update(reference, reference)
    degraded.update(reference, noisy)
    assert same.compute()["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert degraded.compute()["lpips"] > 0.05


@pytest.mark.skipif(not cached(FID_WEIGHTS), reason=f"rFID needs torch-fidelity's Inception weights ({FID_WEIGHTS}) in the torch hub cache; no download offline")
def test_rfid_is_near_zero_for_identical_sets(photographs):
    reference = as_unit(photographs, 64)
    metrics = ImageMetrics(["rfid"])
    metrics.update(reference, reference)
    assert abs(metrics.compute()["rfid"]) < 1e-2


@pytest.mark.skipif(cached(LPIPS_WEIGHTS), reason="the LPIPS weights are cached here, so nothing is unavailable")
def test_unloadable_weights_make_the_metric_unavailable_with_a_reason():
    metrics = ImageMetrics(["psnr", "lpips"])
    reference = torch.rand(2, 3, 16, 16)
    metrics.update(reference, reference)
    results = metrics.compute()
    if "lpips" in results:  # the download went through: a machine with network access
        assert results["lpips"] == pytest.approx(0.0, abs=1e-6)
    else:
        assert "weights" in metrics.unavailable["lpips"] or "package" in metrics.unavailable["lpips"]
        assert "psnr" in results


def test_unknown_metric_and_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown image metrics"):
        ImageMetrics(["fid"])
    with pytest.raises(ValueError, match="one shape"):
        ImageMetrics(["psnr"]).update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
