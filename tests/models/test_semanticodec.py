"""SemantiCodec on the contract: the 12 releases and the tiny model, the feature extractor against
the original's filterbank, encoder codes identical to the original's (recorded at random init in
tests/fixtures/semanticodec/encoder/), padded batches, seeded decoding, and errors.
Decoder parity lives in tests/models/test_semanticodec_decoder.py, key maps in
tests/conversion/test_semanticodec_conversion.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

from modalzoo import create_config, create_model, create_processor, list_models
from modalzoo.conversion.checkpoint_io import load_checkpoint
from modalzoo.conversion.semanticodec import split_state_dict
from modalzoo.models.semanticodec import SemantiCodecFeatureExtractor, SemantiCodecModel
from tolerances import CROSS_CPU_ATOL

FIXTURES = Path(__file__).parents[1] / "fixtures" / "semanticodec" / "encoder"


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    recorded = np.load(FIXTURES / "input_16k.npz")
    return {"short": recorded["short"], "long": recorded["long"], "exact": recorded["long"][:163840]}


def original_model(rate: int) -> SemantiCodecModel:
    """The tiny encoder recorded from the original, converted (encoder only)."""
    layers = json.loads((FIXTURES / f"tiny{rate}" / "config.json").read_text())["lstm_layer"]
    config = create_config("semanticodec-tiny", tokens_per_second=rate, lstm_num_layers=layers, decoder=None)
    state = load_checkpoint(FIXTURES / f"tiny{rate}" / "encoder.ckpt")
    mapped, _ = split_state_dict(state, np.load(FIXTURES / f"tiny{rate}" / "codebook_64_0.npy"), config)
    model = SemantiCodecModel(config).eval()
    model.load_state_dict(mapped)
    return model


def test_releases_and_tiny_are_registered():
    rows = {row["name"]: row for row in list_models(family="semanticodec")}
    releases = [f"semanticodec-{rate}-{vocab}" for rate in (25, 50, 100) for vocab in (4096, 8192, 16384, 32768)]
    assert sorted(rows) == sorted(releases + ["semanticodec-tiny"])
    assert rows["semanticodec-100-32768"]["codebook_sizes"] == [32768, 8192]
    assert rows["semanticodec-100-32768"]["token_rate"] == 50.0  # code frames/s: 100 tokens/s in 2 rows
    assert rows["semanticodec-25-4096"]["token_rate"] == 12.5
    # the README's bitrates
    assert "1.40 kbps" in rows["semanticodec-100-32768"]["description"]
    assert "0.31 kbps" in rows["semanticodec-25-4096"]["description"]
    config = create_config("semanticodec-25-16384")
    assert (config.feature_dim, config.lstm_num_layers, config.hop_length) == (3072, 2, 1280)
    assert config.decoder["window_frames"] == 128
    model = create_model("semanticodec-tiny")
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_config_rejects_unknown_rates():
    with pytest.raises(ValueError, match="tokens_per_second must be one of"):
        create_config("semanticodec-tiny", tokens_per_second=75)
    with pytest.raises(ValueError, match="decoder renders 320 samples per frame but the encoder's hop is 1280"):
        create_model("semanticodec-tiny", tokens_per_second=25)


def test_feature_extractor_matches_the_original_filterbank(inputs):
    processor = create_processor("semanticodec-tiny")
    recorded = np.load(FIXTURES / "fbank.npz")
    batch = processor([inputs["short"], inputs["long"], inputs["exact"]], sampling_rate=16000)
    assert batch["input_features"].shape == (3, 2048, 128)
    np.testing.assert_allclose(batch["input_features"][0, :1024].numpy(), recorded["short"], atol=CROSS_CPU_ATOL, rtol=0)
    for index, name in ((1, "long"), (2, "exact")):
        features = batch["input_features"][index].numpy()
        np.testing.assert_allclose(np.concatenate([features[:64], features[1000:1048], features[-64:]]), recorded[name], atol=CROSS_CPU_ATOL, rtol=0)
    # the short item's second segment is the constant padding row (masked by the encoder)
    assert torch.all(batch["input_features"][0, 1024:] == batch["input_features"][0, -1, 0])
    assert batch["padding_mask"].sum(-1).tolist() == [inputs[name].shape[0] for name in ("short", "long", "exact")]


def test_feature_extractor_resamples_and_refuses_bad_input(speech, inputs, tmp_path):
    create_processor("semanticodec-tiny").save_pretrained(tmp_path)
    create_config("semanticodec-tiny").save_pretrained(tmp_path)
    processor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(processor, SemantiCodecFeatureExtractor)
    samples, rate = speech[0][0], speech[1]  # espeak-ng at 22.05 kHz: the recorded "short" input
    batch = processor(samples, sampling_rate=rate)
    assert batch["padding_mask"].sum() == inputs["short"].shape[0]
    np.testing.assert_allclose(batch["input_values"][0, 0, : inputs["short"].shape[0]].numpy(), inputs["short"], atol=1e-6)
    with pytest.raises(ValueError, match="sampling_rate must be given"):
        processor(samples)
    with pytest.raises(ValueError, match="floating-point samples"):
        processor((samples * 32767).astype(np.int16), sampling_rate=rate)
    with pytest.raises(ValueError, match=r"1 or 2 channels"):
        processor(np.zeros((2, 3, 400), np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="shorter than one frame"):
        processor(np.zeros(100, np.float32), sampling_rate=16000)


@pytest.mark.parametrize("rate", [100, 50, 25])
def test_codes_are_the_originals(rate, inputs):
    model = original_model(rate)
    outputs = np.load(FIXTURES / f"tiny{rate}" / "outputs.npz")
    summary = json.loads((FIXTURES / "summary.json").read_text())
    for name, audio in inputs.items():
        encoded = model.encode(torch.from_numpy(audio)[None, None])
        assert encoded.codes_mask is None
        assert encoded.codes.shape == (1, 2, summary[f"{rate}/{name}"]["frames"])
        np.testing.assert_array_equal(encoded.codes[0].T.numpy(), outputs[f"{name}_tokens"])
        # the conditioning the original hands its decoder (padding frames -1), and the token path
        frames = encoded.latents.shape[1]
        np.testing.assert_allclose(encoded.latents[0].numpy(), outputs[f"{name}_condition"][:frames], atol=1e-6, rtol=0)
        np.testing.assert_allclose(model.dequantize(encoded.codes)[0].numpy(), outputs[f"{name}_dequantized"], atol=1e-6, rtol=0)
    # an exact 10.24 s gets one more 0.16 s patch column, as in the original
    assert model.num_frames(163840) == summary[f"{rate}/exact"]["frames"] == 520 * rate // 100


def test_padded_batch_encodes_as_items_alone(inputs):
    model = original_model(100)
    outputs = np.load(FIXTURES / "tiny100" / "outputs.npz")
    processor = create_processor(model.config)
    names = ["exact", "short", "long"]
    batch = processor([inputs[name] for name in names], sampling_rate=16000)
    encoded = model.encode(**batch)
    assert encoded.codes_mask.sum(-1).tolist() == [520, 144, 608]
    for index, name in enumerate(names):
        length = int(encoded.codes_mask[index].sum())
        np.testing.assert_array_equal(encoded.codes[index, :, :length].T.numpy(), outputs[f"{name}_tokens"])
    # input_values alone (features computed by the model) give the same codes
    again = model.encode(batch["input_values"], padding_mask=batch["padding_mask"])
    assert torch.equal(again.codes, encoded.codes) and torch.equal(again.codes_mask, encoded.codes_mask)


def test_encode_refuses_bad_input():
    model = create_model("semanticodec-tiny")
    with pytest.raises(ValueError, match=r"input_values must be \[batch, 1, samples\]"):
        model.encode(torch.zeros(1, 16000))
    with pytest.raises(ValueError, match="input_values .* or input_features"):
        model.encode()
    with pytest.raises(ValueError, match="need padding_mask"):
        model.encode(input_features=torch.zeros(1, 1024, 128))
    with pytest.raises(ValueError, match=r"input_features must be \[batch, segments \* 1024, 128\]"):
        model.encode(input_features=torch.zeros(1, 1024, 64), padding_mask=torch.ones(1, 16000))
    with pytest.raises(ValueError, match="the longest item needs 2048"):
        model.encode(input_features=torch.zeros(1, 1024, 128), padding_mask=torch.ones(1, 170000))
    with pytest.raises(ValueError, match=r"padding_mask must be \[batch, samples\]"):
        model.encode(torch.zeros(1, 1, 16000), padding_mask=torch.ones(1, 100))


@pytest.fixture(scope="module")
def tiny_model() -> SemantiCodecModel:
    torch.manual_seed(0)
    return create_model("semanticodec-tiny")


def test_decode_is_seeded_masked_and_round_trips_through_save(tiny_model, inputs, tmp_path):
    audio = [inputs["short"][:8000], inputs["short"][:4000]]
    batch = create_processor(tiny_model.config)(audio, sampling_rate=16000)
    encoded = tiny_model.encode(**batch)
    assert encoded.codes.shape == (2, 2, 32) and encoded.codes_mask.sum(-1).tolist() == [32, 16]

    def decode(seed):
        return tiny_model.decode(encoded.codes, codes_mask=encoded.codes_mask, num_steps=2, generator=torch.Generator().manual_seed(seed))

    first, second, other = decode(0), decode(0), decode(1)
    assert first.values.shape == (2, 1, 32 * 320)
    assert torch.equal(first.values, second.values) and not torch.equal(first.values, other.values)
    assert first.values_mask.sum(-1).tolist() == [32 * 320, 16 * 320]
    assert torch.all(first.values[1, 0, 16 * 320 :] == 0) and first.values[1, 0, : 16 * 320].abs().max() > 0

    tiny_model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.encode(**batch).codes, encoded.codes)
    assert torch.equal(loaded.encoder.audiomae.pos_embed, tiny_model.encoder.audiomae.pos_embed)
    reloaded = loaded.decode(encoded.codes, codes_mask=encoded.codes_mask, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(reloaded.values, first.values)


def test_decode_refuses_bad_codes(tiny_model):
    with pytest.raises(ValueError, match="out of vocabulary"):
        tiny_model.decode(torch.full((1, 2, 4), 64))
    with pytest.raises(ValueError, match=r"2 rows \[semantic, acoustic\]"):
        tiny_model.decode(torch.zeros(1, 1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes_mask must be \[batch, frames\]"):
        tiny_model.decode(torch.zeros(1, 2, 4, dtype=torch.long), codes_mask=torch.ones(1, 3, dtype=torch.bool))
    encoder_only = create_model("semanticodec-tiny", decoder=None)
    with pytest.raises(ValueError, match="without a decoder"):
        encoder_only.decode(torch.zeros(1, 2, 4, dtype=torch.long))


def test_forward_trains_the_acoustic_codebook(inputs):
    model = original_model(100).train()
    before = model.encoder.acoustic_quantizer.codebook.clone()
    output = model(torch.from_numpy(inputs["short"])[None, None])
    assert output.loss.ndim == 0 and output.loss > 0 and set(output.losses) == {"commitment"}
    output.loss.backward()
    assert model.encoder.acoustic_proj.weight.grad.abs().sum() > 0
    assert model.encoder.audiomae.patch_embed.proj.weight.grad is None  # frozen, as the original
    assert not torch.equal(before, model.encoder.acoustic_quantizer.codebook)  # EMA update (decay 0.9)


def test_bfloat16_load_keeps_codebooks_fp32(tiny_model, inputs, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    model = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert model.encoder.acoustic_proj.weight.dtype == torch.bfloat16
    assert model.encoder.semantic_quantizer.codebook.dtype == torch.float32
    assert model.encoder.acoustic_quantizer.vq._codebook.embed.dtype == torch.float32
    audio = torch.from_numpy(inputs["short"])[None, None]
    codes = model.encode(audio).codes
    agreement = (codes == tiny_model.encode(audio).codes).float().mean()
    assert agreement > 0.9  # bf16 activations move a few near-tie frames
    decoded = model.decode(codes[..., :16], num_steps=1, generator=torch.Generator().manual_seed(0))
    assert decoded.values.dtype == torch.bfloat16 and torch.isfinite(decoded.values.float()).all()


def test_forward_gives_the_diffusion_loss_and_it_trains(inputs):
    torch.manual_seed(0)
    model = create_model("semanticodec-tiny").train()
    audio = torch.from_numpy(inputs["short"])[None, None]
    batch = torch.cat([audio, 0.5 * audio])
    padding_mask = torch.ones(2, batch.shape[-1], dtype=torch.long)
    padding_mask[1, 20000:] = 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=3e-3)
    history = []
    for _ in range(12):
        output = model(batch, padding_mask=padding_mask, generator=torch.Generator().manual_seed(0))
        assert set(output.losses) == {"commitment", "diffusion"}
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        history.append(output.losses["diffusion"].item())
    assert history[-1] < 0.7 * history[0]  # same timesteps and noise each step: the UNet fits them
    assert model.encoder.acoustic_proj.weight.grad.abs().sum() > 0  # through the straight-through VQ
    assert model.decoder.vae.encoder.conv_in.weight.grad is None  # AudioLDM's VAE stays frozen
    assert output.codes.shape == (2, 2, 144)


def test_tiny_recipe_trains_through_the_shared_trainer(tmp_path):
    from modalzoo.training import Trainer, load_recipe

    recipe = load_recipe("semanticodec_tiny", ["data.batch_size=2", "log_with=[csv]", f"output_dir={tmp_path}"])
    trainer = Trainer(recipe, resume=False)
    logs = [trainer.train_step() for _ in range(2)]
    assert trainer.loss_weights == {"diffusion": 1.0, "commitment": 1.0}
    assert all(math.isfinite(float(entry[name])) for entry in logs for name in ("diffusion", "commitment", "loss"))
    frozen = trainer.model.encoder.audiomae.patch_embed.proj.weight
    assert not frozen.requires_grad and frozen.grad is None
