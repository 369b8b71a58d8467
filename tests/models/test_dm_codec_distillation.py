"""DM-Codec's training terms: the original's losses (recorded values), and the LM / SM teachers
through transformers, loaded with `from_pretrained` from tiny random models saved locally."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modalzoo import create_model
from modalzoo.models.dm_codec import DMCodecTeachers
from modalzoo.models.dm_codec import losses_dm_codec as losses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dm_codec"
RECORDED = json.loads((FIXTURES / "tiny" / "losses.json").read_text())


# ----- the original's terms, against its recorded values -------------------------------------------
def test_reconstruction_and_multi_scale_mel_match_the_original():
    target = torch.from_numpy(np.load(FIXTURES / "input.npy"))
    predicted = torch.from_numpy(np.load(FIXTURES / "tiny" / "audio.npy"))
    config = create_model("dm-codec-tiny").config
    assert losses.reconstruction_loss(target, predicted).item() == pytest.approx(RECORDED["recon"], rel=1e-6)
    per_scale = [losses.mel_loss(target, predicted, **s).item() for s in losses.multi_scale_mel_settings(config)]
    assert per_scale == pytest.approx(RECORDED["mel_per_scale"], rel=1e-5)
    total = losses.multi_scale_mel_loss(target, predicted, config).item()
    assert total == pytest.approx(RECORDED["mel_weighted"], rel=1e-5)


def test_d_axis_distillation_and_teacher_weightings_match_the_original():
    data = np.load(FIXTURES / "tiny" / "distill.npz")
    feature, speech, text = (torch.from_numpy(data[k]) for k in ("feature", "speech_target", "text_target"))
    speech_loss = losses.d_axis_distill_loss(feature, speech)  # teacher has one frame fewer
    text_loss = losses.d_axis_distill_loss(feature, text)  # teacher longer: cut to the codec frames
    assert speech_loss.item() == pytest.approx(RECORDED["distill_sm"], rel=1e-6)
    assert text_loss.item() == pytest.approx(RECORDED["distill_lm"], rel=1e-6)
    assert losses.combine_distill_losses("llm", speech_loss, text_loss).item() == pytest.approx(RECORDED["distill_lm"], rel=1e-6)
    combined = losses.combine_distill_losses("combined", speech_loss, text_loss)
    assert combined.item() == pytest.approx(RECORDED["distill_combined"], rel=1e-6)
    teacher, weights = losses.parse_original_teacher("combined_0.3_0.7")
    weighted = losses.combine_distill_losses(teacher, speech_loss, text_loss, weights)
    assert weighted.item() == pytest.approx(RECORDED["distill_combined_0.3_0.7"], rel=1e-6)
    assert losses.parse_original_teacher("llm") == ("llm", None)


def test_gan_terms_match_the_original():
    data = np.load(FIXTURES / "tiny" / "gan.npz")
    real = [torch.from_numpy(data[f"real{i}"]) for i in range(2)]
    fake = [torch.from_numpy(data[f"fake{i}"]) for i in range(2)]
    maps = {side: [[torch.from_numpy(data[f"fmap_{side}{i}_{j}"]) for j in range(n)] for i, n in enumerate((2, 1))]
            for side in ("real", "fake")}
    assert losses.discriminator_loss(real, fake).item() == pytest.approx(RECORDED["discriminator_loss"], rel=1e-6)
    assert losses.adversarial_loss(fake).item() == pytest.approx(RECORDED["adversarial_loss"], rel=1e-6)
    assert losses.feature_loss(maps["real"], maps["fake"]).item() == pytest.approx(RECORDED["feature_loss"], rel=1e-6)


# ----- teachers ------------------------------------------------------------------------------------------
WIDTH = 8  # dm-codec-tiny's semantic_dimension
SMALL = dict(hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
             conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


@pytest.fixture(scope="module")
def teacher_folders(tmp_path_factory) -> dict[str, str]:
    """Tiny random HuBERT, wav2vec2-CTC (+ character vocabulary) and BERT (+ WordPiece
    vocabulary), saved as Hub-style folders: the teachers load through `from_pretrained`."""
    from transformers import (BertConfig, BertModel, BertTokenizer, HubertConfig, HubertModel, Wav2Vec2Config,
                              Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC)

    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**SMALL)).save_pretrained(root / "hubert")
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(root / "hubert")  # as hubert-base-ls960
    letters = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVKXJQZ'"]
    (root / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(letters)}))
    Wav2Vec2CTCTokenizer(str(root / "vocab.json")).save_pretrained(root / "asr")
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(root / "asr")  # as wav2vec2-base-960h
    Wav2Vec2ForCTC(Wav2Vec2Config(**SMALL, vocab_size=len(letters), pad_token_id=0)).save_pretrained(root / "asr")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz'", *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz'"]]
    (root / "wordpiece.txt").write_text("\n".join(pieces))
    BertTokenizer(str(root / "wordpiece.txt")).save_pretrained(root / "bert")
    BertModel(BertConfig(vocab_size=len(pieces), hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(root / "bert")
    return {"speech_teacher": str(root / "hubert"), "asr_model": str(root / "asr"), "text_teacher": str(root / "bert")}


@pytest.fixture(scope="module")
def teachers(teacher_folders) -> DMCodecTeachers:
    config = create_model("dm-codec-tiny", distill_teacher="combined", **teacher_folders).config
    return DMCodecTeachers(config)


def test_teacher_features_are_aligned_as_the_original(teachers, speech):
    clips, rate = speech
    import torchaudio

    audio = torchaudio.functional.resample(torch.from_numpy(clips[1]), rate, 16000)[:16000].reshape(1, 1, -1)
    features = teachers(audio)
    # HuBERT / wav2vec2: floor((T - 400) / 320) + 1 frames, one fewer than the codec's 50
    assert features["speech_teacher_features"].shape == (1, 49, WIDTH)
    # BERT runs on the transcript padded / truncated to the number of ASR frames
    texts, frames = teachers.text.transcribe(audio)
    assert frames == 49 and isinstance(texts[0], str)
    assert features["text_teacher_features"].shape == (1, 49, WIDTH)
    tokens = teachers.text.text_tokenizer(texts, truncation=True, padding="max_length", max_length=frames)
    assert len(tokens["input_ids"][0]) == 49 and tokens["input_ids"][0][0] == teachers.text.text_tokenizer.cls_token_id
    # "avg" is the mean of every hidden state (embeddings included), as extract_rep.py
    hubert = teachers.speech.model(audio.reshape(1, -1), output_hidden_states=True).hidden_states
    torch.testing.assert_close(features["speech_teacher_features"], torch.stack(hubert).mean(0))
    assert not any(p.requires_grad for p in teachers.parameters())


@pytest.mark.parametrize("teacher", ["llm", "combined"])
def test_forward_distils_the_first_stage_towards_the_teachers(teacher, teacher_folders, teachers):
    model = create_model("dm-codec-tiny", distill_teacher=teacher, **teacher_folders).train()
    model.set_teachers(teachers if teacher == "combined" else DMCodecTeachers(model.config))
    audio = torch.randn(2, 1, 3200) * 0.1
    output = model(audio)
    assert set(output.losses) == {"reconstruction", "mel", "commitment", "distillation"}
    expected_names = {"llm": {"text"}, "combined": {"speech", "text"}}[teacher]
    assert (model.teachers.speech is not None) == ("speech" in expected_names)
    config = model.config
    total = (config.reconstruction_loss_weight * output.losses["reconstruction"] + output.losses["mel"]
             + config.commitment_loss_weight * output.losses["commitment"] + 120 * output.losses["distillation"])
    torch.testing.assert_close(output.loss, total)
    output.losses["distillation"].backward()
    assert model.transform.weight.grad is not None and model.transform.weight.grad.abs().sum() > 0
    assert model.encoder.layers[0].conv.parametrizations.weight.original1.grad is not None
    # teachers are training inputs, never part of the codec's weights
    assert not any(key.startswith(("speech", "text", "_teachers")) for key in model.state_dict())


def test_teachers_load_lazily_from_the_config(teacher_folders):
    model = create_model("dm-codec-tiny", distill_teacher="llm", **teacher_folders).train()
    output = model(torch.randn(1, 1, 1600) * 0.1)
    assert "distillation" in output.losses and model.teachers.text is not None and model.teachers.speech is None


def test_precomputed_teacher_features_and_no_teacher():
    model = create_model("dm-codec-tiny").train()
    audio = torch.randn(1, 1, 3200) * 0.1
    assert "distillation" not in model(audio).losses
    speech = torch.randn(1, 9, WIDTH)
    output = model(audio, speech_teacher_features=speech)
    # features given to forward (precomputed, as the original's extract_rep.py) pick the term
    assert output.losses["distillation"].ndim == 0 and torch.isfinite(output.losses["distillation"])
    with pytest.raises(ValueError, match="needs text_teacher_features"):
        create_model("dm-codec-tiny", distill_teacher="combined").train()(audio, speech_teacher_features=speech)


# ----- the recipe on the shared trainer ---------------------------------------------------------------
def test_discriminators_have_the_original_layout():
    from modalzoo.models.dm_codec.discriminators_dm_codec import NUM_FEATURE_MAPS, NUM_LOGITS, DMCodecDiscriminator

    full = DMCodecDiscriminator()
    assert sum(p.numel() for p in full.parameters()) == 71_196_921  # MPD + MSD + MS-STFT(32) of the original
    logits, features = DMCodecDiscriminator(width=1 / 16)(torch.randn(1, 1, 4800))
    assert len(logits) == NUM_LOGITS == 13 and sum(len(maps) for maps in features) == NUM_FEATURE_MAPS == 79


def test_tiny_recipe_trains_with_both_teachers(tmp_path, teacher_folders):
    from modalzoo.training import Trainer, load_recipe

    teachers = [f"model.overrides.{name}={path}" for name, path in teacher_folders.items()]
    recipe = load_recipe("dm_codec_tiny", [
        "log_with=[csv]", "num_samples=0", "eval_every=0", "save_every=0", "data.segment_seconds=0.2",
        "model.overrides.distill_teacher=combined", *teachers, "loss_weights.distillation=120", f"output_dir={tmp_path}",
    ])  # fmt: skip
    trainer = Trainer(recipe, resume=False)
    logs = [trainer.train_step() for _ in range(2)]
    assert trainer.loss_weights == {"reconstruction": 500.0, "mel": 1.0, "commitment": 10.0, "distillation": 120.0,
                                    "adversarial": 13.0, "feature_matching": 158.0}  # fmt: skip
    assert all(torch.isfinite(torch.tensor(v)) for entry in logs for v in entry.values())
    assert logs[-1]["distillation"] > 0 and "discriminator" in logs[-1]
    assert not any("teacher" in key for key in trainer.model.state_dict())


def test_lm_sm_recipe_uses_the_original_weights():
    from modalzoo.training import load_recipe

    recipe = load_recipe("dm_codec_lm_sm")
    assert recipe.loss_weights == {"reconstruction": 500.0, "mel": 1.0, "commitment": 10.0, "distillation": 120.0,
                                   "adversarial": 13.0, "feature_matching": 158.0}  # fmt: skip
    assert recipe.model.overrides["distill_teacher"] == "combined" and recipe.discriminator.name == "mpd_msd_msstft"
    assert (recipe.optim.lr, recipe.optim.betas, recipe.data.batch_size, recipe.data.segment_seconds) == (1e-4, [0.9, 0.99], 6, 3.0)


def test_tiny_recipe_through_modalzoo_train(tmp_path):
    from transformers import AutoModel

    from modalzoo.cli import main
    from modalzoo.training.reporting import read_metrics

    output = tmp_path / "run"
    code = main(["train", "dm_codec_tiny", "steps=2", "data.segment_seconds=0.2", "log_every=1", "num_samples=0",
                 "log_with=[csv]", f"output_dir={output}"])  # fmt: skip
    assert code == 0
    metrics = read_metrics(output)
    assert "eval/si_sdr" in metrics and len(metrics["train/mel"]) == 2
    final = AutoModel.from_pretrained(output / "final")
    assert final.config.codebook_size == 16 and final.quantizer.layers[0].codebook.inited.item() == 1
