"""DM-Codec on the modalzoo contract: variants, processor on real speech, num_quantizers,
masked batches equal to items alone, chunked long audio, save/load, code validation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo import create_model, create_processor, list_models
from modalzoo.models.dm_codec import DMCodecConfig, DMCodecModel

try:
    from modalzoo.conversion import dm_codec as converter
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from conversion import dm_codec as converter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dm_codec"


@pytest.fixture(scope="module")
def model() -> DMCodecModel:
    """The parity fixture's tiny original weights (diverse codebooks), converted in memory."""
    state_dict = torch.load(FIXTURES / "tiny" / "Model_best_dev.pt", map_location="cpu", weights_only=True)
    config = converter.infer_config(state_dict)
    model = DMCodecModel(config).eval()
    model.load_state_dict(converter.convert_state_dict(state_dict, config))
    return model


def test_variants_are_registered():
    rows = {row["name"]: row for row in list_models(family="dm_codec")}
    assert set(rows) == {"dm-codec-lm-sm", "dm-codec-lm", "dm-codec-tiny"}
    for name in ("dm-codec-lm-sm", "dm-codec-lm"):
        assert rows[name]["codebook_sizes"] == [1024] * 8 and rows[name]["token_rate"] == 50.0
        assert rows[name]["modality"] == "speech"
    assert modalzoo.create_config("dm-codec-lm").distill_teacher == "llm"
    assert modalzoo.create_config("dm-codec-lm-sm").distill_teacher == "combined"


def test_tiny_variant_round_trip_shapes():
    model = create_model("dm-codec-tiny")
    audio = torch.randn(1, 1, 3200) * 0.1
    codes = model.encode(audio).codes
    assert codes.shape == (1, 8, 10) and codes.dtype == torch.long
    assert model.decode(codes).values.shape == (1, 1, 3200)


def test_real_speech_through_the_processor(model, speech):
    clips, rate = speech
    processor = create_processor(model.config)
    inputs = processor(clips[0], sampling_rate=rate)
    assert inputs["input_values"].shape[-1] % 320 == 0
    output = model.encode(**inputs)
    frames = -(-inputs["input_values"].shape[-1] // 320)
    assert output.codes.shape == (1, 8, frames) and bool(output.codes_mask.all())
    decoded = model.decode(output.codes, codes_mask=output.codes_mask)
    audio = processor.postprocess(decoded.values, decoded.values_mask)[0]
    assert audio.dtype == np.float32 and audio.shape[0] == frames * 320


@pytest.mark.parametrize("num_quantizers", [1, 4, 8])
def test_num_quantizers_selects_a_prefix_of_the_stages(model, num_quantizers):
    audio = torch.from_numpy(np.load(FIXTURES / "input.npy"))[:1]
    every = model.encode(audio).codes
    some = model.encode(audio, num_quantizers=num_quantizers).codes
    assert some.shape == (1, num_quantizers, 50)
    assert torch.equal(some, every[:, :num_quantizers])


def test_num_quantizers_out_of_range(model):
    audio = torch.zeros(1, 1, 640)
    for bad in (0, 9):
        with pytest.raises(ValueError, match=r"num_quantizers must be in \[1, 8\]"):
            model.encode(audio, num_quantizers=bad)


def test_padded_batch_equals_items_alone(model, speech):
    """The bidirectional LSTM would carry padding into every frame: groups of equal length are
    encoded (and decoded) on their own samples, so every item gets its solo codes exactly."""
    clips, rate = speech
    processor = create_processor(model.config)
    items = [clips[0][:15000], clips[1][:9000], clips[0][2000:11000]]
    together = model.encode(**processor(items, sampling_rate=rate), num_quantizers=4)
    decoded = model.decode(together.codes, codes_mask=together.codes_mask)
    for index, item in enumerate(items):
        alone = model.encode(**processor(item, sampling_rate=rate), num_quantizers=4)
        frames = alone.codes.shape[-1]
        assert int(together.codes_mask[index].sum()) == frames
        assert torch.equal(together.codes[index, :, :frames], alone.codes[0])
        assert not together.codes[index, :, frames:].any()
        solo = model.decode(alone.codes).values[0]
        # batched kernels sum in another order than a batch of one: equal to float rounding
        torch.testing.assert_close(decoded.values[index, :, : frames * 320], solo, rtol=0, atol=1e-5)
        assert int(decoded.values_mask[index].sum()) == frames * 320


def test_chunked_encode_keeps_the_frame_count(model):
    audio = torch.from_numpy(np.load(FIXTURES / "input.npy"))[:1]
    whole = model.encode(audio).codes
    chunked = model.encode(audio, chunk_length_s=0.4, chunk_overlap_s=0.2).codes
    assert chunked.shape == whole.shape
    decoded = model.decode(whole, chunk_length_s=0.4, chunk_overlap_s=0.2).values
    assert decoded.shape == (1, 1, 16000)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    create_processor(model.config).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DMCodecModel)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert AutoFeatureExtractor.from_pretrained(tmp_path).sampling_rate == 16000
    audio = torch.from_numpy(np.load(FIXTURES / "input.npy"))[:1, :, :3200]
    assert torch.equal(loaded.encode(audio).codes, model.encode(audio).codes)


def test_decode_validates_codes(model):
    with pytest.raises(ValueError, match="out of vocabulary"):
        model.decode(torch.full((1, 2, 3), 64))
    with pytest.raises(ValueError, match="9 codebooks"):
        model.decode(torch.zeros(1, 9, 3, dtype=torch.long))


def test_config_validation():
    with pytest.raises(ValueError, match="distill_teacher"):
        DMCodecConfig(distill_teacher="gpt")
    with pytest.raises(ValueError, match="distill_weights"):
        DMCodecConfig(distill_teacher="llm", distill_weights=[0.5, 0.5])
    assert DMCodecConfig(semantic_dimension=1024).semantic_dimension == 1024
    identity = create_model("dm-codec-tiny", semantic_dimension=16)
    assert isinstance(identity.transform, torch.nn.Identity)
