"""SemantiCodec decoder: key maps of the three released decoders and per-stage parity with the
original (haoheliu/SemantiCodec-inference) at random init, from data recorded in
tests/fixtures/semanticodec/decoder/ (see its README)."""

from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from modalzoo.conversion.semanticodec_decoder import map_decoder_state_dict
from modalzoo.models.semanticodec.decoder_semanticodec import SemantiCodecDecoder, released_decoder_config, tiny_decoder_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "semanticodec" / "decoder"


def fixture(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(FIXTURES / f"{name}.npy"))


def fill_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The recording's deterministic random init, seeded by the original key name."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        if "ups." in key:  # ConvTranspose1d weight: [in, out, k]
            fan_in = shape[0] * shape[2] // 2
        return x / np.sqrt(fan_in)
    if key.endswith("weight"):
        return 1.0 + 0.1 * x
    return 0.1 * x


@pytest.fixture(scope="module")
def parity_decoder():
    meta = json.loads((FIXTURES / "parity.json").read_text())
    original = {key: fill_value(key, tuple(meta["state_dict"][key])) for key in meta["parameters"]}
    original["scale_factor"] = torch.tensor(meta["scale_factor"])
    mapped, dropped = map_decoder_state_dict(original)
    assert dropped == ["logvar"]  # DDPM's training-only constant (an nn.Parameter)
    decoder = SemantiCodecDecoder(meta["decoder_config"], meta["feature_dim"]).eval()
    missing, unexpected = decoder.load_state_dict(mapped, strict=False)
    # the schedule is recomputed from the config, exactly as the original registers it
    assert missing == ["alphas_cumprod"] and unexpected == []
    return decoder


@pytest.mark.parametrize("token_rate", [100, 50, 25])
def test_released_decoder_keys_map_with_shapes(token_rate):
    listing = json.loads((FIXTURES / "released_keys.json").read_text())
    shapes = {k: v if isinstance(v, list) else v[str(token_rate)] for k, v in listing["state_dict"].items()}
    original = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    mapped, dropped = map_decoder_state_dict(original)
    assert all(k.startswith("model_ema.") or "." not in k for k in dropped)
    assert len(mapped) + len(dropped) == len(original) + 2  # + SpeechT5HifiGan's identity mean/scale
    with torch.device("meta"):
        ours = SemantiCodecDecoder(released_decoder_config(token_rate), listing["feature_dim"][str(token_rate)]).state_dict()
    assert sorted(mapped) == sorted(ours)
    wrong = [k for k in ours if tuple(ours[k].shape) != tuple(mapped[k].shape)]
    assert wrong == []


def test_unknown_keys_and_encoder_checkpoints_are_refused():
    with pytest.raises(ValueError, match="no `model.diffusion_model"):
        map_decoder_state_dict({"audiomae.model.cls_token": torch.zeros(1)})
    meta = json.loads((FIXTURES / "parity.json").read_text())
    state = {k: torch.empty(s, device="meta") for k, s in meta["state_dict"].items()}
    state["first_stage_model.vocoder.conv_pre.weight_g"] = torch.empty(1, device="meta")
    with pytest.raises(ValueError, match="conv_pre.weight_g"):
        map_decoder_state_dict(state)


def test_schedule_matches_the_original_buffer(parity_decoder):
    # the original's buffers are float64-derived; diffusers' own float32 cumprod differs by ~1e-6
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    expected = torch.cumprod(1 - betas, 0).float()
    torch.testing.assert_close(parity_decoder.alphas_cumprod, expected, rtol=0, atol=1e-7)
    scheduler = parity_decoder.make_scheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))  # make_ddim_timesteps(uniform) + 1


def test_one_unet_step_matches_original(parity_decoder):
    context, _ = parity_decoder.context(fixture("unet_features"))
    with torch.no_grad():
        out = parity_decoder.unet(fixture("unet_x"), fixture("unet_t"), encoder_hidden_states=context, return_dict=False)[0]
    expected = fixture("unet_out")
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_vae_decode_and_vocoder_match_original(parity_decoder):
    with torch.no_grad():
        mel = parity_decoder.latents_to_mel(fixture("vae_z"))  # channels-last, folded upsampling
        wav = parity_decoder.vocoder(fixture("vocoder_mel").squeeze(1))  # channels-last 1-D convs
    torch.testing.assert_close(mel, fixture("vae_mel").squeeze(1), rtol=0, atol=1e-5)
    expected = fixture("vocoder_wav").squeeze(1)
    assert expected.abs().max() > 0.05
    torch.testing.assert_close(wav, expected, rtol=0, atol=1e-5)


def test_full_ddim_sampler_with_fixed_noise_matches_original(parity_decoder):
    """10 DDIM steps, eta 0, CFG 2.0 with zeroed-feature unconditional context."""
    latents = parity_decoder.sample_latents(fixture("sampler_features"), num_steps=10, guidance_scale=2.0, eta=0.0, initial_noise=fixture("sampler_xT"))
    torch.testing.assert_close(latents, fixture("sampler_latent"), rtol=0, atol=1e-4)
    wav = parity_decoder.latents_to_waveform(latents)
    torch.testing.assert_close(wav, fixture("sampler_wav").squeeze(1), rtol=0, atol=1e-4)


def test_windowed_decode_matches_original_decode_with_same_seed(parity_decoder):
    """`main.py::decode` on 40 frames: 3 windows (the last padded with -1), eta 1, cross-faded.
    One window per sampler batch draws the noise in the original's order from the seed."""
    generator = torch.Generator().manual_seed(1234)
    wav = parity_decoder.generate(fixture("decode_features"), num_steps=5, guidance_scale=2.0, generator=generator, window_batch_size=1)
    expected = fixture("decode_wav").reshape(1, -1)
    assert wav.shape == expected.shape == (1, 40 * 320)
    torch.testing.assert_close(wav, expected, rtol=0, atol=1e-4)


def test_last_window_is_vocoded_only_to_the_items_end(parity_decoder):
    """The released HiFi-GAN (in the parity decoder) on a 160-frame mel: an item ending after 20
    feature frames (6400 samples) needs 40 mel frames; 40 + the margin are vocoded, not 160."""
    mel = fixture("vocoder_mel")[0, 0].repeat(7, 1)[:160] + 0.1 * torch.randn(160, 64, generator=torch.Generator().manual_seed(0))
    calls = []
    hook = parity_decoder.vocoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            (trimmed,) = parity_decoder.vocode_windows([mel], owners=[0], lengths=[20], chunk=1)
            whole = parity_decoder.vocoder(mel[None])[0]
    finally:
        hook.remove()
    assert calls == [40 + 64, 160]
    assert trimmed.shape[0] == parity_decoder.vocoder_length(104) and whole.shape[0] == parity_decoder.vocoder_length(160)
    # equal up to fp32 rounding: oneDNN blocks a shorter sequence differently (~1e-6 apart)
    torch.testing.assert_close(trimmed[:6400], whole[:6400], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_decoder():
    torch.manual_seed(0)
    decoder = SemantiCodecDecoder(tiny_decoder_config(24), 24).eval()
    with torch.no_grad():  # audible random weights: the libraries' inits (zeroed outputs, std 0.01) are near-silent
        for name, p in decoder.named_parameters():
            p.copy_(fill_value(name, tuple(p.shape)))
    return decoder


def test_tiny_config_is_small():
    decoder = SemantiCodecDecoder(tiny_decoder_config(24), 24)
    assert sum(p.numel() for p in decoder.parameters()) < 100_000
    json.dumps(tiny_decoder_config(24)), json.dumps(released_decoder_config(25))


def test_generate_is_reproducible_per_generator_and_batches_by_length(tiny_decoder):
    features = torch.randn(3, 40, 24)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 25:] = False
    run = lambda seed, **kw: tiny_decoder.generate(features, num_steps=4, generator=torch.Generator().manual_seed(seed), features_mask=mask, **kw)
    a, b, c = run(7), run(7), run(8)
    assert a.shape == (3, 40 * 320)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a[1, 25 * 320 :].abs().max() == 0 and a[1, : 25 * 320].abs().max() > 0
    # item 1 is decoded as its 25 frames alone: windows at 0 and 15, same as an unpadded run
    assert tiny_decoder.split_windows(25) == [(0, 16), (15, 25)]
    # one window per sampler batch (the CPU default) or all at once: different noise order, same
    # shapes and silence
    assert torch.equal(run(7, window_batch_size=1), a)
    d = run(7, window_batch_size=8)
    assert d.shape == a.shape and d[1, 25 * 320 :].abs().max() == 0 and not torch.allclose(d, a)


def test_guidance_uses_the_features(tiny_decoder):
    features = torch.randn(1, 16, 24)
    noise = torch.randn(1, *tiny_decoder.latent_shape)
    sample = lambda f, g: tiny_decoder.sample_latents(f, num_steps=3, guidance_scale=g, eta=0.0, initial_noise=noise)
    assert not torch.allclose(sample(features, 2.0), sample(features * 0.5, 2.0))
    # guidance 1.0 is the conditional prediction alone; 2.0 extrapolates away from the zero context
    assert not torch.allclose(sample(features, 1.0), sample(features, 2.0))


def test_key_value_cache_changes_nothing_and_is_emptied(tiny_decoder, monkeypatch):
    features, noise = torch.randn(2, 16, 24), torch.randn(2, *tiny_decoder.latent_shape)
    sample = lambda: tiny_decoder.sample_latents(features, num_steps=4, guidance_scale=2.0, eta=0.0, initial_noise=noise)
    processors = tiny_decoder.unet.attn_processors
    to_k = [tiny_decoder.unet.get_submodule(n.removesuffix(".processor")).to_k for n, p in processors.items() if p in tiny_decoder._kv_caches]
    assert to_k, "the cross-attention layers must use the caching processor"
    projections = []
    handles = [m.register_forward_hook(lambda *_: projections.append(1)) for m in to_k]
    try:
        cached = sample()
        assert len(projections) == len(to_k)  # the context is projected once for all 4 steps
        assert all(cache.source is None and not cache.caching for cache in tiny_decoder._kv_caches)
        monkeypatch.setattr(type(tiny_decoder), "cached_context", lambda self: contextlib.nullcontext())
        projections.clear()
        plain = sample()
        assert len(projections) == 4 * len(to_k)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-6)


def test_bad_inputs_are_refused(tiny_decoder):
    with pytest.raises(ValueError, match=r"\[batch, frames, 24\]"):
        tiny_decoder.generate(torch.zeros(1, 10, 23))
    with pytest.raises(ValueError, match="features_mask"):
        tiny_decoder.generate(torch.zeros(2, 10, 24), features_mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="token_rate"):
        released_decoder_config(75)


def test_compare_original_plugin_fills_the_original_keys_with_our_tensors(parity_decoder):
    """The bench plugin's inverse map: the original's state dict filled from ours maps back to
    exactly our tensors (VAE attention 1x1 convolutions reshaped both ways)."""
    from modalzoo.evaluation.originals.semanticodec import check_representable, original_decoder_state

    meta = json.loads((FIXTURES / "parity.json").read_text())

    class OriginalKeys:  # stands in for the original LatentDiffusion: only its state dict is read
        def state_dict(self):
            return {k: torch.zeros(s) for k, s in meta["state_dict"].items()}

    filled = original_decoder_state(OriginalKeys(), parity_decoder)
    assert filled["first_stage_model.decoder.mid.attn_1.q.weight"].dim() == 4
    assert filled["logvar"].abs().max() == 0  # dropped keys keep the original's own values
    back, _ = map_decoder_state_dict(filled)
    ours = parity_decoder.state_dict()
    assert all(torch.equal(back[k], ours[k]) for k in back if k not in ("vocoder.mean", "vocoder.scale"))
    check_representable(parity_decoder.config)
    with pytest.raises(ValueError, match="192-d x 512 position embedding"):
        check_representable(tiny_decoder_config(16))
