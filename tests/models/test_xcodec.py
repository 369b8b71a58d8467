"""X-Codec on the contract: the same weights as transformers' `XcodecModel`, batches of different
lengths, chunking, `num_quantizers` / `bandwidth`, and the training terms. Real speech (espeak-ng)
goes through the feature extractor. Parity with the original code lives in
tests/conversion/test_xcodec_conversion.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel, DacFeatureExtractor, XcodecModel

from modalzoo import create_config, create_model, create_processor, list_models
from modalzoo.models.xcodec import (
    MultiFrequencyDiscriminator,
    XcodecFeatureExtractor,
    XcodecGeneratorLoss,
    XcodecTokenizer,
    XcodecTokenizerConfig,
)
from modalzoo.models.xcodec.losses_xcodec import (
    FULL_BAND_RESOLUTIONS,
    SUB_BAND_RESOLUTIONS,
    feature_matching_loss,
    mse_discriminator_loss,
    mse_generator_loss,
    multi_resolution_stft_loss,
    pqmf_analysis,
    pqmf_analysis_filters,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "xcodec"
RELEASES = [
    "xcodec-hubert-librispeech",
    "xcodec-hubert-general",
    "xcodec-hubert-general-balanced",
    "xcodec-wavlm-mls",
    "xcodec-wavlm-more-data",
]


@pytest.fixture(scope="module")
def model() -> XcodecTokenizer:
    torch.manual_seed(0)
    return create_model("xcodec-tiny")


@pytest.fixture(scope="module")
def processor() -> XcodecFeatureExtractor:
    return create_processor("xcodec-tiny")


@pytest.fixture(scope="module")
def clips(speech) -> tuple[list[np.ndarray], int]:
    """The two espeak-ng utterances (22.05 kHz), cut to 1.3 s and 0.7 s to keep the tests fast."""
    (first, second), rate = speech
    return [first[: int(1.3 * rate)], second[: int(0.7 * rate)]], rate


@pytest.fixture(scope="module")
def batch(clips, processor):
    items, rate = clips
    return processor(items, sampling_rate=rate)


def test_variants_and_contract_facts():
    rows = {row["name"]: row for row in list_models(family="xcodec_tokenizer")}
    assert set(rows) == {*RELEASES, "xcodec-tiny"}
    for name in RELEASES:
        assert rows[name]["codebook_sizes"] == [1024] * 8 and rows[name]["token_rate"] == 50.0
        config = create_config(name)
        assert config.hop_length == 320 and config.sampling_rate == 16000 and config.target_bandwidths[-1] == 4.0
    assert create_config("xcodec-wavlm-mls").semantic_model_config.model_type == "wavlm"
    tiny = create_model("xcodec-tiny")
    assert 1_000 <= sum(p.numel() for p in tiny.parameters()) <= 100_000
    assert tiny.modality == "audio" and tiny.num_codebooks == 4 and tiny.token_rate == 50.0
    assert isinstance(tiny, XcodecModel)


def test_same_weights_and_numbers_as_transformers(tmp_path, batch):
    """A transformers-format folder (as hf-audio/xcodec-*) loads into the modalzoo family, and a
    modalzoo folder into XcodecModel: same codes, bit-identical audio."""
    config = create_config("xcodec-tiny").to_transformers()
    torch.manual_seed(1)
    reference = XcodecModel(config).eval()
    with torch.no_grad():  # transformers initialises codebooks to zeros: give them content
        for layer in reference.quantizer.quantizers:
            layer.codebook.embed.normal_(0, 0.05)
    reference.save_pretrained(tmp_path / "hf")
    DacFeatureExtractor(sampling_rate=16000, hop_length=320).save_pretrained(tmp_path / "hf")

    ours = XcodecTokenizer.from_pretrained(tmp_path / "hf").eval()
    audio = batch["input_values"]
    for bandwidth in [None, *config.target_bandwidths]:
        expected = reference.encode(audio, bandwidth=bandwidth).audio_codes
        codes = ours.encode(audio, bandwidth=bandwidth).codes
        assert torch.equal(codes, expected)
        with torch.no_grad():
            assert torch.equal(ours.decode(codes).values, reference.decode(expected).audio_values)
    with torch.no_grad():
        assert torch.equal(ours.decode(codes).values[..., : audio.shape[-1]], reference(audio).audio_values)

    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "hf")
    assert isinstance(extractor, DacFeatureExtractor)  # transformers' own mapping is untouched
    ours_extractor = XcodecFeatureExtractor.from_pretrained(tmp_path / "hf")
    assert (ours_extractor.sampling_rate, ours_extractor.hop_length) == (16000, 320)

    ours.save_pretrained(tmp_path / "ours")
    back = XcodecModel.from_pretrained(tmp_path / "ours").eval()
    assert torch.equal(back.encode(audio).audio_codes, codes)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "ours"), XcodecTokenizer)
    assert torch.equal(XcodecTokenizer.from_transformers(reference).encode(audio).codes, codes)
    assert torch.equal(ours.to_transformers().encode(audio).audio_codes, codes)


def test_batch_items_equal_items_alone(model, processor, clips, batch):
    items, rate = clips
    encoded = model.encode(**batch)
    lengths = encoded.codes_mask.sum(-1).tolist()
    assert encoded.codes.shape == (2, 4, max(lengths)) and lengths[0] > lengths[1]
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    assert decoded.values_mask.shape == decoded.values.shape[::2]
    for index, item in enumerate(items):
        alone = model.encode(**processor([item], sampling_rate=rate))
        frames = alone.codes.shape[-1]
        assert frames == lengths[index]
        assert torch.equal(alone.codes, encoded.codes[index : index + 1, :, :frames])
        alone_audio = model.decode(alone.codes).values
        samples = frames * model.hop_length
        torch.testing.assert_close(decoded.values[index : index + 1, :, :samples], alone_audio, atol=1e-5, rtol=0)
        assert decoded.values[index, :, samples:].abs().max() == 0 if samples < decoded.values.shape[-1] else True
    # codes past an item's end are ignored, whatever they hold
    scribbled = encoded.codes.masked_fill(~encoded.codes_mask[:, None], -7)
    again = model.decode(scribbled, codes_mask=encoded.codes_mask)
    assert torch.equal(again.values, decoded.values)
    arrays = processor.postprocess(decoded.values, decoded.values_mask)
    assert [a.shape[0] for a in arrays] == [n * model.hop_length for n in lengths]


def test_num_quantizers_and_bandwidth(model, batch):
    audio = batch["input_values"]
    full = model.encode(audio).codes
    for depth in (1, 2, 3):
        assert torch.equal(model.encode(audio, num_quantizers=depth).codes, full[:, :depth])
    assert torch.equal(model.encode(audio, bandwidth=0.8).codes, full[:, :2])
    values = model.decode(full[:, :2]).values
    assert values.shape == (2, 1, full.shape[-1] * model.hop_length)
    with pytest.raises(ValueError, match="not both"):
        model.encode(audio, bandwidth=0.8, num_quantizers=2)
    with pytest.raises(ValueError, match="target_bandwidths"):
        model.encode(audio, bandwidth=0.5)
    with pytest.raises(ValueError, match="num_quantizers"):
        model.encode(audio, num_quantizers=5)
    with pytest.raises(ValueError, match="out of vocabulary"):
        model.decode(torch.full((1, 2, 3), 256))


def test_chunked_long_audio(model, processor, clips):
    items, rate = clips
    long_item = np.concatenate([items[0], items[1], items[0]])  # ~3.3 s
    inputs = processor([long_item, items[1]], sampling_rate=rate)
    whole = model.encode(**inputs)

    windows = []
    original = model._encode_window
    model._encode_window = lambda window, depth: (windows.append(window.shape[-1]), original(window, depth))[1]
    try:
        chunked = model.encode(**inputs, chunk_length_s=1.0, chunk_overlap_s=0.5)
    finally:
        del model._encode_window
    # memory bounded by the window: 1 s plus 0.5 s of context on each side
    assert max(windows) <= 2.0 * 16000 and len(windows) == 4
    assert chunked.codes.shape == whole.codes.shape and torch.equal(chunked.codes_mask, whole.codes_mask)
    mask = whole.codes_mask
    first = (chunked.codes[:, 0] == whole.codes[:, 0])[mask].float().mean()
    assert first > 0.9  # only the teacher's attention sees further than the context
    alone = model.encode(**processor([items[1]], sampling_rate=rate), chunk_length_s=1.0, chunk_overlap_s=0.5)
    assert torch.equal(alone.codes, chunked.codes[1:, :, : alone.codes.shape[-1]])

    # the decoder is convolutional: with 1 s of context, chunking changes nothing
    decoded = model.decode(whole.codes, codes_mask=mask)
    chunk_decoded = model.decode(whole.codes, codes_mask=mask, chunk_length_s=0.5)
    torch.testing.assert_close(chunk_decoded.values, decoded.values, atol=1e-5, rtol=0)


def test_forward_training_terms(batch):
    torch.manual_seed(0)
    model = create_model("xcodec-tiny").train()
    assert not model.semantic_model.training  # the teacher stays frozen in eval mode
    assert not any(p.requires_grad for p in model.semantic_model.parameters())
    embed_before = model.quantizer.quantizers[0].codebook.embed.clone()
    output = model(**batch)
    assert set(output.losses) == {"stft", "subband_stft", "commitment", "semantic"}
    assert all(torch.isfinite(term) for term in output.losses.values())
    weights = model.config.loss_weights
    torch.testing.assert_close(output.loss, sum(weights[k] * v for k, v in output.losses.items()))
    assert output.values.shape == batch["input_values"].shape
    output.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    # k-means on the first batch, then EMA
    assert model.quantizer.quantizers[0].codebook.inited.item() == 1
    assert not torch.equal(model.quantizer.quantizers[0].codebook.embed, embed_before)

    # a pretrained teacher goes in as the original's AutoModel.from_pretrained does
    teacher = AutoModel.from_config(model.config.semantic_model_config)
    model.load_teacher(teacher)
    assert torch.equal(model.semantic_model.encoder.layers[0].attention.q_proj.weight, teacher.encoder.layers[0].attention.q_proj.weight)
    with pytest.raises(ValueError, match="does not fit"):
        model.load_teacher(AutoModel.from_config(create_config("xcodec-tiny", semantic_model_config={"model_type": "hubert", "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8, "conv_dim": [8] * 7, "num_hidden_layers": 1, "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2}).semantic_model_config))

    discriminator = MultiFrequencyDiscriminator(hop_lengths=(32, 64), hidden_channels=(32, 32))
    output = model(**batch, num_quantizers=2, discriminator=discriminator)
    assert {"adversarial", "feature_matching"} <= set(output.losses) and output.codes.shape[1] == 2
    output.loss.backward()
    assert all(p.grad is not None for p in discriminator.parameters())


def test_pqmf_is_the_original_design():
    taps, bands, beta, cutoff = 62, 6, 9.0, 0.10032791
    n = np.arange(taps + 1) - 0.5 * taps
    with np.errstate(invalid="ignore", divide="ignore"):
        ideal = np.sin(np.pi * cutoff * n) / (np.pi * n)
    ideal[taps // 2] = cutoff
    prototype = ideal * np.kaiser(taps + 1, beta)
    expected = np.stack(
        [2 * prototype * np.cos((2 * k + 1) * (np.pi / (2 * bands)) * n + (-1) ** k * np.pi / 4) for k in range(bands)]
    )
    np.testing.assert_allclose(pqmf_analysis_filters(bands)[:, 0].numpy(), expected, atol=1e-7)
    signal = torch.randn(2, 1, 600)
    assert pqmf_analysis(signal, bands).shape == (2, bands, 100)


def test_generator_losses_match_the_original():
    """The original `GeneratorSTFTLoss` (its config, adversarial terms off) on the tiny fixture's
    input and decoded audio, recorded in losses/losses.json."""
    recorded = json.loads((FIXTURES / "losses" / "losses.json").read_text())["generator_loss_items"]
    target = torch.from_numpy(np.load(FIXTURES / "tiny" / "input.npy"))
    output = torch.from_numpy(np.load(FIXTURES / "tiny" / "audio_bw1.5.npy"))
    full = multi_resolution_stft_loss(output[:, 0], target[:, 0], FULL_BAND_RESOLUTIONS)
    bands_out, bands_in = pqmf_analysis(output, 6), pqmf_analysis(target, 6)
    sub = multi_resolution_stft_loss(bands_out.reshape(-1, bands_out.shape[-1]), bands_in.reshape(-1, bands_in.shape[-1]), SUB_BAND_RESOLUTIONS)
    ours = {"Train/G_sc_full": full[0], "Train/G_mg_full": full[1], "Train/G_sc_sub": sub[0], "Train/G_mg_sub": sub[1]}
    for name, value in recorded.items():
        assert float(ours[name]) == pytest.approx(value, rel=1e-5)
    terms = XcodecGeneratorLoss()(output, target)
    assert float(terms["stft"]) == pytest.approx(recorded["Train/G_sc_full"] + recorded["Train/G_mg_full"], rel=1e-5)
    assert float(terms["subband_stft"]) == pytest.approx(recorded["Train/G_sc_sub"] + recorded["Train/G_mg_sub"], rel=1e-5)


def test_discriminator_matches_the_original():
    """The original MultiFrequencyDiscriminator (tiny widths) with its recorded weights and
    logits on (input, decoded audio) of the tiny fixture."""
    meta = json.loads((FIXTURES / "losses" / "losses.json").read_text())
    config = meta["mfd_config"]
    discriminator = MultiFrequencyDiscriminator(hop_lengths=config["hop_lengths"], hidden_channels=config["hidden_channels"])
    original = torch.load(FIXTURES / "losses" / "mfd_tiny.pth", weights_only=True)
    renamed = {
        key.replace(".discriminator.", ".layers.")
        .replace(".weight_g", ".parametrizations.weight.original0")
        .replace(".weight_v", ".parametrizations.weight.original1"): value
        for key, value in original.items()
    }
    discriminator.load_state_dict(renamed)
    target = torch.from_numpy(np.load(FIXTURES / "tiny" / "input.npy"))
    output = torch.from_numpy(np.load(FIXTURES / "tiny" / "audio_bw1.5.npy"))
    with torch.no_grad():
        real_logits, real_features = discriminator(target)
        fake_logits, fake_features = discriminator(output)
    assert [list(r.shape) for r in real_logits] == meta["mfd_logit_shapes"]
    assert len(real_features[0]) == meta["mfd_feature_maps"]
    for mine, name in ((real_logits, "real"), (fake_logits, "fake")):
        flat = torch.cat([logit.flatten() for logit in mine]).numpy()
        np.testing.assert_allclose(flat, np.load(FIXTURES / "losses" / f"mfd_{name}_logits.npy"), atol=1e-5, rtol=1e-4)
    # the least-squares losses, by hand
    torch.testing.assert_close(mse_generator_loss([torch.zeros(3), torch.ones(2)]), torch.tensor(0.5))
    torch.testing.assert_close(mse_discriminator_loss([torch.ones(3)], [torch.ones(3)]), torch.tensor(1.0))
    assert float(feature_matching_loss(real_features, real_features)) == 0.0
    assert float(feature_matching_loss(real_features, fake_features)) > 0.0


def test_config_round_trip():
    config = create_config("xcodec-tiny")
    plain = config.to_transformers()
    assert plain.model_type == "xcodec" and plain.num_quantizers == config.num_quantizers
    again = XcodecTokenizerConfig.from_transformers(plain)
    assert again.to_transformers().to_dict() == plain.to_dict()
    with pytest.raises(ValueError, match="unknown loss_weights"):
        create_config("xcodec-tiny", loss_weights={"mel": 1.0})


def test_tiny_recipe_trains_against_the_multi_frequency_discriminator(tmp_path):
    """training/recipes/xcodec_tiny.yaml through the shared trainer: the model's four terms plus
    the trainer's MSE-GAN and feature matching once the discriminator starts."""
    from modalzoo.cli import main
    from modalzoo.training import load_recipe
    from modalzoo.training.reporting import read_metrics

    recipe = load_recipe("xcodec_tiny")
    assert recipe.discriminator.name == "multi_frequency" and recipe.discriminator.loss == "ls"
    assert recipe.loss_weights == {**create_config("xcodec-tiny").loss_weights}
    output = tmp_path / "run"
    code = main(
        ["train", "xcodec_tiny", "steps=3", "discriminator.start_step=2", "data.batch_size=2", "log_every=1", "eval_every=0",
         "save_every=0", "num_samples=0", "log_with=[csv]", f"output_dir={output}"]
    )  # fmt: skip
    assert code == 0
    metrics = read_metrics(output)
    for term in ("train/stft", "train/subband_stft", "train/commitment", "train/semantic"):
        assert len(metrics[term]) == 3 and all(np.isfinite(v) for _, v in metrics[term])
    assert [step for step, _ in metrics["train/feature_matching"]] == [3]
    assert "train/discriminator" in metrics
    reloaded = XcodecTokenizer.from_pretrained(output / "final")
    assert reloaded.config.codebook_size == 32 and reloaded.config.num_quantizers == 4


def test_model_card_and_remote_code(tmp_path):
    from modalzoo.hub import export_remote_code
    from modalzoo.hub.cards import render_model_card

    model = create_model("xcodec-tiny")
    model.config.variant = "xcodec-wavlm-mls"  # the card only reads the name; the tiny weights keep it fast
    card = render_model_card(model, "me/xcodec-wavlm-mls")
    assert "hf-audio/xcodec-wavlm-mls" in card.text and "XcodecModel.from_pretrained" in card.text
    assert "@inproceedings" in card.text.split("## Citation")[1]
    model.save_pretrained(tmp_path)
    create_processor("xcodec-tiny").save_pretrained(tmp_path)
    auto_map = export_remote_code(tmp_path, "xcodec_tokenizer")
    assert auto_map["AutoModel"] == "modeling_xcodec.XcodecTokenizer"
    for path in tmp_path.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] != "modalzoo", f"{path.name} imports {node.module}"


def test_bfloat16_load_keeps_fp32_codebooks(tmp_path, model, batch):
    model.save_pretrained(tmp_path)
    half = XcodecTokenizer.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.fc.weight.dtype == torch.bfloat16 and half.quantizer.quantizers[0].codebook.embed.dtype == torch.float32
    encoded = half.encode(**batch)
    decoded = half.decode(encoded.codes, codes_mask=encoded.codes_mask)
    assert decoded.values.dtype == torch.bfloat16 and torch.isfinite(decoded.values.float()).all()
