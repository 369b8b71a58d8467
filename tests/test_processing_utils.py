import numpy as np
import pytest
import torch
from PIL import Image

from modalzoo.processing_utils import ModalAudioFeatureExtractor, ModalImageProcessor


@pytest.fixture
def image_processor():
    return ModalImageProcessor(image_size=64)


def test_photographs_of_any_size_and_mode_become_one_batch(image_processor, photographs):
    astronaut, coffee, camera = photographs
    rgba = Image.fromarray(astronaut).convert("RGBA")
    inputs = [astronaut, coffee, camera, rgba, torch.from_numpy(coffee).permute(2, 0, 1), coffee / 255.0]
    pixel_values = image_processor(inputs)["pixel_values"]
    assert pixel_values.shape == (6, 3, 64, 64)
    assert pixel_values.min() >= 0 and pixel_values.max() <= 1
    # grayscale is replicated to three equal channels
    assert torch.equal(pixel_values[2, 0], pixel_values[2, 1])
    # numpy HWC, tensor CHW and PIL of the same uint8 photo agree exactly
    assert torch.equal(pixel_values[1], pixel_values[4])
    assert torch.equal(image_processor(Image.fromarray(coffee))["pixel_values"][0], pixel_values[1])
    # float input goes through torchvision's antialiased resize: close to PIL's, not identical
    assert (pixel_values[5] - pixel_values[1]).abs().mean() < 0.02


def test_resize_keeps_aspect_then_centre_crops(image_processor):
    # left half black, right half white, 100x300: after resize to 64x192 the centre crop is
    # the middle third, which straddles the edge in the middle.
    image = np.zeros((100, 300, 3), dtype=np.uint8)
    image[:, 150:] = 255
    pixels = image_processor(image)["pixel_values"][0]
    assert pixels[:, :, :28].max() < 0.05 and pixels[:, :, 36:].min() > 0.95


def test_alpha_is_composited_on_white(image_processor):
    transparent = np.zeros((8, 8, 4), dtype=np.uint8)
    pixels = image_processor(transparent)["pixel_values"]
    assert torch.allclose(pixels, torch.ones_like(pixels))


def test_value_range_and_postprocess_round_trip(photographs):
    processor = ModalImageProcessor(image_size=32, value_range=(-1.0, 1.0))
    pixel_values = processor(photographs[0])["pixel_values"]
    assert pixel_values.min() >= -1 and pixel_values.min() < -0.5
    image = processor.postprocess(pixel_values * 1.5)[0]  # out of range values are clamped
    assert image.size == (32, 32) and image.mode == "RGB"
    again = processor.postprocess(pixel_values)[0]
    expected = ((pixel_values[0] + 1) / 2 * 255).round().permute(1, 2, 0).to(torch.uint8).numpy()
    assert np.array_equal(np.asarray(again), expected)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3, 4, 5, 6), dtype=np.uint8), "expected an image"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "C in \\(1, 3, 4\\)"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "empty"),
        (np.full((8, 8, 3), np.nan, dtype=np.float32), "NaN or Inf"),
        (np.full((8, 8, 3), 2.0, dtype=np.float32), "must lie in \\[0, 1\\]"),
        (np.zeros((8, 8, 3), dtype=np.int64), "dtype int64"),
        (torch.zeros(5, 8, 8), "C in \\(1, 3, 4\\)"),
        ("astronaut.png", "expected a PIL image"),
        ([], "empty list"),
    ],
)
def test_bad_images_get_clear_errors(image_processor, bad, message):
    with pytest.raises(ValueError, match=message):
        image_processor(bad)


def test_postprocess_rejects_wrong_shape(image_processor):
    with pytest.raises(ValueError, match="\\[B, 3, H, W\\]"):
        image_processor.postprocess(torch.zeros(3, 8, 8))


@pytest.fixture
def extractor():
    return ModalAudioFeatureExtractor(sampling_rate=16000, hop_length=320)


def test_speech_is_resampled_padded_and_masked(extractor, speech):
    utterances, rate = speech
    assert rate == 22050
    batch = extractor(utterances, sampling_rate=rate)
    values, mask = batch["input_values"], batch["padding_mask"]
    assert values.shape[:2] == (2, 1) and values.shape[-1] % 320 == 0
    expected = [int(np.ceil(len(u) * 16000 / 22050)) for u in utterances]
    assert [abs(int(m.sum()) - e) <= 1 for m, e in zip(mask, expected)] == [True, True]
    shorter = int(mask[1].sum())
    assert values[1, 0, shorter:].abs().sum() == 0
    # resampling keeps the speech's energy
    assert abs(values[0].pow(2).mean().sqrt() - np.sqrt((utterances[0] ** 2).mean())) < 0.02


def test_stereo_is_mixed_in_either_layout(extractor):
    left = np.sin(np.linspace(0, 100, 3200, dtype=np.float32))
    stereo = np.stack([left, np.zeros_like(left)])
    first = extractor(stereo, sampling_rate=16000)["input_values"]
    second = extractor(stereo.T, sampling_rate=16000)["input_values"]
    assert torch.equal(first, second)
    assert torch.allclose(first[0, 0], torch.from_numpy(left) / 2)


def test_postprocess_trims_each_item(extractor):
    values = torch.randn(2, 1, 640)
    mask = torch.zeros(2, 640, dtype=torch.bool)
    mask[0], mask[1, :320] = True, True
    first, second = extractor.postprocess(values, mask)
    assert first.shape == (640,) and second.shape == (320,)
    assert np.array_equal(second, values[1, 0, :320].numpy())


@pytest.mark.parametrize(
    "bad, rate, message",
    [
        (np.zeros(3200, dtype=np.float32), None, "sampling_rate must be given \\(this model expects 16000 Hz"),
        (np.zeros(100, dtype=np.float32), 16000, "shorter than one frame: 100 samples"),
        (np.zeros(0, dtype=np.float32), 16000, "empty"),
        (np.full(3200, np.inf, dtype=np.float32), 16000, "NaN or Inf"),
        (np.zeros(3200, dtype=np.int16), 16000, "floating-point samples.*int16"),
        (np.zeros((2, 2, 1, 3200), dtype=np.float32), 16000, "expected audio"),
        (np.zeros((3, 5, 3200), dtype=np.float32), 16000, "1 or 2 channels"),
    ],
)
def test_bad_audio_gets_clear_errors(extractor, bad, rate, message):
    with pytest.raises(ValueError, match=message):
        extractor(bad, sampling_rate=rate)
