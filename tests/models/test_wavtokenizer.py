"""WavTokenizer on the contract, with real speech (espeak-ng, and Debian's alsa-utils clips when
installed) through the feature extractor. Parity with the original lives in
tests/conversion/test_wavtokenizer_conversion.py."""

from __future__ import annotations

import glob
import math
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo import create_config, create_model, create_processor, list_models
from modalzoo.layers.vocos import ISTFT
from modalzoo.models.wavtokenizer import WavTokenizerConfig, WavTokenizerFeatureExtractor, WavTokenizerModel

RELEASED = {
    "wavtokenizer-75-small": 75.0,
    "wavtokenizer-40-small": 40.0,
    "wavtokenizer-75-medium-speech": 75.0,
    "wavtokenizer-75-medium-music-audio": 75.0,
    "wavtokenizer-75-large-speech": 75.0,
    "wavtokenizer-40-large-unify": 40.0,
}
# Frames at the end of an item whose encoder receptive field reaches past it (measured for both
# hops by `test_padding_reaches_only_the_last_frames`).
PADDING_EDGE_FRAMES = WavTokenizerModel.PADDED_EDGE_FRAMES
ALSA_CLIPS = sorted(glob.glob("/usr/share/sounds/alsa/*.wav"))


def _espeak(path, text: str) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it with apt-get)")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return soundfile.read(path, dtype="float32")


@pytest.fixture(scope="module")
def held_out_speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    """Speech that no test encodes: the tiny model's codebook is k-means initialised on it."""
    path = tmp_path_factory.mktemp("held_out") / "held_out.wav"
    return _espeak(path, "A different sentence trains the codebook. Seven brave geese fly south in autumn.")


def _trained_tiny(held_out_speech, **overrides) -> WavTokenizerModel:
    """wavtokenizer-tiny made to behave like a trained codec: a fresh SEANet's output barely moves
    over time (every frame near-ties every code), so its weight-norm gains are doubled, and the
    codebook is k-means initialised on held-out speech by one training step."""
    model = create_model("wavtokenizer-tiny", **overrides)
    with torch.no_grad():
        for name, parameter in model.encoder.named_parameters():
            if name.endswith("parametrizations.weight.original0"):
                parameter.mul_(2.0)
    samples, rate = held_out_speech
    model.train()
    with torch.no_grad():
        model(**create_processor(model.config)(samples, sampling_rate=rate))
    return model.eval()


@pytest.fixture(scope="module")
def tiny(held_out_speech) -> WavTokenizerModel:
    torch.manual_seed(0)
    return _trained_tiny(held_out_speech)


@pytest.fixture(scope="module")
def processor() -> WavTokenizerFeatureExtractor:
    return create_processor("wavtokenizer-tiny")


def _cut(speech, fractions=(0.55, 0.8, 0.3)) -> tuple[list[np.ndarray], int]:
    """Items that end mid-word, so the padding after them is not near-silence."""
    clips, rate = speech
    return [clips[i % len(clips)][: int(len(clips[i % len(clips)]) * f) + 37 * i] for i, f in enumerate(fractions)], rate


# ----- registry and config -----------------------------------------------------------------------
def test_every_release_is_registered_with_an_exact_token_rate():
    rows = {row["name"]: row for row in list_models(family="wavtokenizer")}
    assert set(rows) == set(RELEASED) | {"wavtokenizer-tiny"}
    for name, rate in RELEASED.items():
        config = create_config(name)
        assert rows[name]["token_rate"] == rate == config.sampling_rate / config.hop_length
        assert rows[name]["codebook_sizes"] == [4096]
        assert config.hop_length == {75.0: 320, 40.0: 600}[rate]
        assert config.n_fft == 4 * config.hop_length
        assert (config.hidden_size, config.decoder_dim, config.decoder_num_layers) == (512, 768, 12)


def test_full_size_model_builds_on_meta_with_the_release_parameter_count():
    with torch.device("meta"):
        model = WavTokenizerModel(create_config("wavtokenizer-40-large-unify"))
    parameters = sum(p.numel() for p in model.parameters())
    # encoder 7.6M + pos-net 15.3M + ConvNeXt 12 x 3.55M + embed/head: about 77M.
    assert 70e6 < parameters < 80e6
    assert model.codebook.embed.shape == (4096, 512)


def test_config_validates():
    with pytest.raises(ValueError, match="n_fft"):
        WavTokenizerConfig(n_fft=1281)
    with pytest.raises(ValueError, match="decoder_num_groups"):
        WavTokenizerConfig(decoder_dim=48)


# ----- processor ---------------------------------------------------------------------------------
def test_feature_extractor_resamples_espeak_speech(speech, processor):
    clips, rate = speech
    assert rate == 22050
    batch = processor(clips, sampling_rate=rate)
    expected = [math.ceil(len(clip) * 24000 / rate) for clip in clips]
    assert batch["input_values"].shape == (2, 1, math.ceil(max(expected) / 320) * 320)
    lengths = batch["padding_mask"].sum(-1).tolist()
    assert all(abs(got - want) <= 1 for got, want in zip(lengths, expected))
    assert float(batch["input_values"].abs().max()) > 0.1


@pytest.mark.skipif(not ALSA_CLIPS, reason="alsa-utils sound clips are not installed (/usr/share/sounds/alsa)")
def test_alsa_recordings_at_48khz_round_trip(tiny, processor):
    samples, rate = soundfile.read(ALSA_CLIPS[0], dtype="float32")
    assert rate == 48000
    batch = processor(samples, sampling_rate=rate)
    assert abs(int(batch["padding_mask"].sum()) - len(samples) // 2) <= 1
    encoded = tiny.encode(**batch)
    decoded = tiny.decode(encoded.codes, codes_mask=encoded.codes_mask)
    audio = processor.postprocess(decoded.values, decoded.values_mask)[0]
    assert audio.shape == (encoded.codes.shape[-1] * 320,) and np.isfinite(audio).all()


# ----- encode / decode ---------------------------------------------------------------------------
def test_encode_decode_real_speech(tiny, processor, speech):
    clips, rate = speech
    batch = processor(clips, sampling_rate=rate)
    encoded = tiny.encode(**batch)
    frames = batch["input_values"].shape[-1] // 320
    assert encoded.codes.shape == (2, 1, frames) and encoded.codes.dtype == torch.long
    assert encoded.codes_mask.shape == (2, frames)
    assert encoded.codes_mask.sum(-1).tolist() == [math.ceil(int(n) / 320) for n in batch["padding_mask"].sum(-1)]
    assert 0 <= int(encoded.codes.min()) and int(encoded.codes.max()) < 256
    assert encoded.codes[0, 0][encoded.codes_mask[0]].unique().numel() > 30  # speech, not one code
    decoded = tiny.decode(encoded.codes, codes_mask=encoded.codes_mask)
    assert decoded.values.shape == (2, 1, frames * 320)
    assert torch.equal(decoded.values_mask, encoded.codes_mask.repeat_interleave(320, dim=-1))
    assert float(decoded.values.detach()[~decoded.values_mask[:, None]].abs().max()) == 0.0
    audio = processor.postprocess(decoded.values, decoded.values_mask)
    assert [len(a) for a in audio] == [int(n) * 320 for n in encoded.codes_mask.sum(-1)]


def test_token_rate_is_exact_for_a_second_of_audio(tiny):
    codes = tiny.encode(torch.zeros(1, 1, 24000)).codes
    assert codes.shape[-1] == tiny.token_rate == 75.0


def test_padding_reaches_only_the_last_frames():
    """Structure of the non-causal encoder: change everything after an item's end and only its
    last PADDING_EDGE_FRAMES latents move (75 and 40 tokens/s)."""
    for ratios in ((8, 5, 4, 2), (6, 5, 5, 4)):
        model = create_model("wavtokenizer-tiny", downsampling_ratios=ratios)
        hop, frames = model.config.hop_length, 30
        item = torch.randn(1, 1, (frames + 10) * hop) * 0.1
        other = item.clone()
        other[..., frames * hop :] = torch.randn(1, 1, 10 * hop)
        with torch.no_grad():
            change = (model.encoder(item) - model.encoder(other))[0, :, :frames].abs().amax(0)
        moved = (change > 1e-6).nonzero().flatten()
        assert frames - int(moved.min()) == PADDING_EDGE_FRAMES, ratios


def _near_tie(latent: torch.Tensor, codebook: torch.Tensor, first: int, second: int) -> bool:
    """Whether two codes are equally near `latent` up to the float32 rounding of the distance
    expression (|x|^2 - 2 x.e + |e|^2 loses ~1e-7 of |x|^2)."""
    distances = (latent.double()[None] - codebook.double()).pow(2).sum(-1)
    return bool(abs(distances[first] - distances[second]) <= 1e-5 * latent.double().pow(2).sum())


def test_padded_items_encode_as_alone_except_the_edge(tiny, processor, speech):
    """The pinned bound: a zero-padded item's codes equal its codes alone on every frame but the
    last PADDING_EDGE_FRAMES (where reflect padding becomes zeros). Elsewhere the latents agree to
    float rounding (batched kernels sum in another order), which can flip a code only at a
    near-tie: measured 0 flips with 2 threads, 2 with 1 thread (other kernels)."""
    clips, rate = _cut(speech)
    batch = processor(clips, sampling_rate=rate)
    together = tiny.encode(**batch)
    with torch.no_grad():
        latents_together = tiny.encoder(batch["input_values"])
    interior_flips = edge_mismatches = interior_frames = 0
    for index, clip in enumerate(clips):
        alone_batch = processor(clip, sampling_rate=rate)
        alone = tiny.encode(**alone_batch).codes[0, 0]
        frames = alone.shape[-1]
        assert int(together.codes_mask[index].sum()) == frames
        interior = frames - PADDING_EDGE_FRAMES
        interior_frames += interior
        with torch.no_grad():
            latents_alone = tiny.encoder(alone_batch["input_values"])[0]
        torch.testing.assert_close(latents_together[index, :, :interior], latents_alone[:, :interior], atol=1e-5, rtol=0)
        for frame in (together.codes[index, 0, :interior] != alone[:interior]).nonzero().flatten().tolist():
            assert _near_tie(latents_alone[:, frame], tiny.codebook.embed, alone[frame], together.codes[index, 0, frame])
            interior_flips += 1
        edge_mismatches += int((together.codes[index, 0, interior:frames] != alone[interior:]).sum())
    assert interior_flips <= interior_frames // 50  # each one a near-tie, checked above
    assert edge_mismatches <= PADDING_EDGE_FRAMES * len(clips)


def test_masked_decode_equals_decoding_each_item_alone(tiny, processor, speech):
    clips, rate = _cut(speech)
    encoded = tiny.encode(**processor(clips, sampling_rate=rate))
    decoded = tiny.decode(encoded.codes, codes_mask=encoded.codes_mask)
    for index in range(len(clips)):
        frames = int(encoded.codes_mask[index].sum())
        alone = tiny.decode(encoded.codes[index : index + 1, :, :frames]).values[0]
        torch.testing.assert_close(decoded.values[index, :, : frames * 320], alone, atol=1e-6, rtol=0)


def test_bandwidth_id_selects_the_adanorm_row(tiny):
    codes = torch.randint(0, 256, (2, 1, 20))
    with torch.no_grad():
        tiny.backbone.norm.scale.weight[1].mul_(1.5)
        try:
            first = tiny.decode(codes, bandwidth_id=0).values
            second = tiny.decode(codes, bandwidth_id=1).values
            mixed = tiny.decode(codes, bandwidth_id=torch.tensor([0, 1])).values
        finally:
            tiny.backbone.norm.scale.weight[1].div_(1.5)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(mixed[0], first[0])
    torch.testing.assert_close(mixed[1], second[1])


def test_bad_inputs_raise(tiny):
    with pytest.raises(ValueError, match=r"\[batch, 1, samples\]"):
        tiny.encode(torch.zeros(1, 24000))
    with pytest.raises(ValueError, match="padding_mask"):
        tiny.encode(torch.zeros(1, 1, 640), padding_mask=torch.ones(1, 320))
    with pytest.raises(ValueError, match="out of vocabulary"):
        tiny.decode(torch.full((1, 1, 4), 256))
    with pytest.raises(ValueError, match="chunk_length_s"):
        tiny.encode(torch.zeros(1, 1, 640), chunk_length_s=0)


# ----- long audio --------------------------------------------------------------------------------
def test_chunked_long_audio_keeps_frame_counts(tiny, processor, speech):
    clips, rate = speech
    minute = np.tile(np.concatenate(clips), 40)[: 60 * rate + 1234]
    batch = processor(minute, sampling_rate=rate)
    whole = tiny.encode(**batch).codes
    chunked = tiny.encode(**batch, chunk_length_s=10, chunk_overlap_s=1).codes
    assert chunked.shape == whole.shape == (1, 1, math.ceil(batch["input_values"].shape[-1] / 320))
    # Only the LSTM state at each window start differs from the unchunked pass.
    assert (chunked == whole).float().mean() > 0.85
    values = tiny.decode(chunked, chunk_length_s=10, chunk_overlap_s=1).values
    assert values.shape == (1, 1, chunked.shape[-1] * 320) and torch.isfinite(values).all()


def test_chunking_a_single_window_equals_no_chunking(tiny, processor, speech):
    clips, rate = speech
    batch = processor(clips, sampling_rate=rate)
    encoded = tiny.encode(**batch)
    assert torch.equal(tiny.encode(**batch, chunk_length_s=60).codes, encoded.codes)
    torch.testing.assert_close(
        tiny.decode(encoded.codes, chunk_length_s=60).values, tiny.decode(encoded.codes).values, atol=0, rtol=0
    )


# ----- building blocks ---------------------------------------------------------------------------
def test_same_padded_istft_matches_torch_istft_where_both_apply():
    n_fft, hop, frames = 64, 16, 12
    spec = torch.randn(2, n_fft // 2 + 1, frames, dtype=torch.complex64)
    spec[:, 0].imag = 0
    spec[:, -1].imag = 0
    ours = ISTFT(n_fft, hop)(spec)
    reference = torch.istft(spec, n_fft, hop, n_fft, torch.hann_window(n_fft), center=True)
    assert ours.shape == (2, frames * hop)
    # "center" trims n_fft / 2 samples per side, "same" trims (n_fft - hop) / 2.
    torch.testing.assert_close(ours[:, hop // 2 : hop // 2 + reference.shape[-1]], reference, atol=1e-5, rtol=1e-5)


def test_training_forward_updates_the_codebook_and_backpropagates(speech, processor):
    torch.manual_seed(1)
    model = create_model("wavtokenizer-tiny").train()
    assert float(model.codebook.inited) == 0.0
    clips, rate = speech
    batch = processor(clips, sampling_rate=rate)
    output = model(**batch)
    assert float(model.codebook.inited) == 1.0  # k-means initialised from the batch
    assert set(output.losses) == {"mel", "commitment"} and torch.isfinite(output.loss)
    torch.testing.assert_close(output.loss, 45 * output.losses["mel"] + 1000 * output.losses["commitment"])
    assert output.values.shape == batch["input_values"].shape
    before = model.codebook.embed.clone()
    output = model(**batch)
    output.loss.backward()
    assert not torch.equal(before, model.codebook.embed)  # EMA update, no gradient
    assert model.codebook.embed.grad is None
    assert model.encoder.layers[0].conv.parametrizations.weight.original1.grad.abs().sum() > 0
    assert model.head.out.weight.grad.abs().sum() > 0


def test_save_and_reload_restores_computed_buffers(tiny, speech, processor):
    clips, rate = speech
    batch = processor(clips, sampling_rate=rate)
    codes = tiny.encode(**batch).codes
    values = tiny.decode(codes).values
    with tempfile.TemporaryDirectory() as folder:
        tiny.save_pretrained(folder)
        processor.save_pretrained(folder)
        reloaded = AutoModel.from_pretrained(folder).eval()
        assert isinstance(AutoFeatureExtractor.from_pretrained(folder), WavTokenizerFeatureExtractor)
        half = AutoModel.from_pretrained(folder, dtype=torch.bfloat16).eval()
    assert torch.equal(reloaded.head.istft.window, torch.hann_window(1280))
    assert int(reloaded.encoder.layers[-1].padding_total) == 6  # EncodecConv1d buffers rebuilt
    assert torch.equal(reloaded.encode(**batch).codes, codes)
    torch.testing.assert_close(reloaded.decode(codes).values, values, atol=0, rtol=0)
    assert half.codebook.embed.dtype == torch.float32 and half.head.out.weight.dtype == torch.bfloat16
    assert half.decode(codes).values.dtype == torch.float32


def test_registered_with_the_auto_classes():
    assert modalzoo.create_processor("wavtokenizer-40-small").hop_length == 600
    config = create_config("wavtokenizer-tiny")
    assert isinstance(AutoModel.from_config(config), WavTokenizerModel)
