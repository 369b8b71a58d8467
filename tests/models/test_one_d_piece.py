"""One-D-Piece: TiTok's modules with quality control by token count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel

import modalzoo
from modalzoo.models.one_d_piece import OneDPieceConfig, OneDPieceImageProcessor, OneDPieceTokenizer
from modalzoo.models.titok import TiTokTokenizer


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return modalzoo.create_model("one-d-piece-tiny")


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32)


def test_variants_are_registered():
    rows = {row["name"]: row for row in modalzoo.list_models(family="one_d_piece")}
    assert set(rows) == {"one-d-piece-s256", "one-d-piece-b256", "one-d-piece-l256", "one-d-piece-tiny"}
    for name in ("one-d-piece-s256", "one-d-piece-b256", "one-d-piece-l256"):
        assert rows[name]["codebook_sizes"] == [4096] and rows[name]["max_tokens"] == 256
    widths = {name: modalzoo.create_config(name).encoder_hidden_size for name in rows}
    assert widths == {"one-d-piece-s256": 512, "one-d-piece-b256": 768, "one-d-piece-l256": 1024, "one-d-piece-tiny": 32}


def test_reuses_titok_modules(tiny):
    assert isinstance(tiny, TiTokTokenizer) and isinstance(tiny, OneDPieceTokenizer)
    assert tiny.config.is_legacy and tiny.config.model_type == "one_d_piece"
    with pytest.raises(ValueError, match="legacy VQ"):
        OneDPieceConfig(is_legacy=False)


def test_any_prefix_encodes_and_decodes(tiny, pixels):
    with torch.no_grad():
        full = tiny.encode(pixels).codes
        assert full.shape == (2, 1, 16)
        previous = None
        for k in (1, 2, 7, 16):
            codes = tiny.encode(pixels, num_tokens=k).codes
            assert torch.equal(codes, full[..., :k])
            values = tiny.decode(codes).values
            assert values.shape == (2, 3, 32, 32) and torch.isfinite(values).all()
            if previous is not None:
                assert not torch.allclose(values, previous)
            previous = values


def test_decoder_reads_only_the_tokens_given(tiny, pixels):
    codes = tiny.encode(pixels).codes
    seen = []
    handle = tiny.decoder.transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        tiny.decode(codes[..., :3])
    handle.remove()
    # class token + 4x4 mask tokens + 3 latent tokens: no padding for the dropped tail
    assert seen == [1 + 16 + 3]


def test_codes_mask_decodes_each_prefix(tiny, pixels):
    codes = tiny.encode(pixels).codes
    mask = torch.arange(16)[None] < torch.tensor([[5], [16]])
    with torch.no_grad():
        values = tiny.decode(codes, codes_mask=mask).values
        assert torch.allclose(values[0], tiny.decode(codes[:1, :, :5]).values[0], atol=1e-5)
        assert torch.allclose(values[1], tiny.decode(codes[1:, :, :]).values[0], atol=1e-5)
    with pytest.raises(ValueError, match="prefix"):
        tiny.decode(codes, codes_mask=~mask)
    with pytest.raises(ValueError, match=r"\[batch, num_tokens\]"):
        tiny.decode(codes, codes_mask=mask[:, :4])


def test_num_tokens_out_of_range(tiny, pixels):
    for bad in (0, 17, -1):
        with pytest.raises(ValueError, match="between 1 and 16"):
            tiny.encode(pixels, num_tokens=bad)
    with pytest.raises(ValueError, match="between 1 and 16"):
        tiny.decode(torch.zeros(1, 1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 1 positions"):
        tiny.decode(torch.zeros(1, 1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="must be an int"):
        tiny.encode(pixels, num_tokens=2.5)
    assert tiny.encode(pixels, num_tokens=np.int64(3)).codes.shape == (2, 1, 3)


def test_training_applies_tail_token_drop(pixels):
    torch.manual_seed(0)
    model = modalzoo.create_model("one-d-piece-tiny").train()
    seen = []
    handle = model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    expected = [int(torch.randint(1, 17, (1,), generator=torch.Generator().manual_seed(seed))) for seed in range(6)]
    for seed in range(6):
        output = model(pixels, generator=torch.Generator().manual_seed(seed))
    assert seen == expected and len(set(seen)) > 1
    assert output.codes.shape == (2, 1, 16)  # the quantizer (and its loss) sees every token
    output.loss.backward()
    seen.clear()
    model.eval()
    model(pixels)
    model(pixels, num_tokens=4)
    handle.remove()
    assert seen == [16, 4]  # no drop at eval; an explicit length always wins


def test_round_trip_real_photographs(tiny, photographs, tmp_path):
    processor = modalzoo.create_processor(tiny.config)
    assert isinstance(processor, OneDPieceImageProcessor)
    inputs = processor(photographs[:2])
    with torch.no_grad():
        codes = tiny.encode(**inputs, num_tokens=4).codes
        images = processor.postprocess(tiny.decode(codes).values)
    assert codes.shape == (2, 1, 4)
    assert [image.size for image in images] == [(32, 32), (32, 32)]
    assert np.asarray(images[0]).dtype == np.uint8

    tiny.save_pretrained(tmp_path)
    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, OneDPieceTokenizer) and not info["missing_keys"]
    with torch.no_grad():
        assert torch.equal(loaded.decode(codes).values, tiny.decode(codes).values)
