"""Model cards rendered from model_cards/<family>.md, offline: metadata, body, model-index."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from huggingface_hub import ModelCard

import modalzoo
from modalzoo import cli
from modalzoo.hub import cards
from modalzoo.hub.cards import normalize_evaluations, quick_start, render_model_card, template_path
from modalzoo.hub.push import _commit_operations, save_for_hub
from modalzoo.registry import FAMILIES, tiny_variant

TINY = sorted(filter(None, map(tiny_variant, FAMILIES)))
EVALUATION = {
    "dataset": {"name": "ImageNet-1k", "type": "ILSVRC/imagenet-1k", "split": "validation"},
    "metrics": {"psnr": 21.5, "rfid": 2.25},
}


def front_matter(card: ModelCard) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("name", TINY)
def test_every_family_renders_a_card_with_modalzoo_metadata(name):
    model = modalzoo.create_model(name)
    card = render_model_card(model, f"me/{name}", metrics=EVALUATION)
    data = front_matter(card)
    assert data["library_name"] == "modalzoo"
    assert data["pipeline_tag"] == cards.PIPELINE_TAGS[model.modality]
    assert data["tags"][:2] == ["modalzoo", "tokenizer"] and model.config.model_type.replace("_", "-") in data["tags"]
    if template_path(model.config.model_type).name != "default.md":
        assert data["license"]  # the licence of the original weights, from the family's template
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("psnr", 21.5), ("rfid", 2.25)]
    text = card.text
    assert f'AutoModel.from_pretrained("me/{name}")' in text
    unit = "image" if model.modality == "image" else "item"  # cards.facts_table: 3D shapes and CAD are items
    tokens = f"{model.token_rate:g} per second" if model.token_rate else f"{model.max_tokens} per {unit}"
    assert f"| Tokens | {tokens}" in text
    assert "| PSNR | 21.5 | ImageNet-1k | validation |" in text
    assert "## Citation" in text


@pytest.mark.parametrize(
    "family, variant, base_model, licence, reported",
    [
        ("titok", "titok-l32", "yucornetto/tokenizer_titok_l32_imagenet", "apache-2.0", "2.21"),
        ("one_d_piece", "one-d-piece-b256", "turing-motors/One-D-Piece-B-256", "apache-2.0", "1.11"),
        ("wavtokenizer", "wavtokenizer-40-large-unify", "novateur/WavTokenizer-large-unify-40token", "mit", None),
    ],
)
def test_converted_variants_name_their_original_release(family, variant, base_model, licence, reported):
    if family not in FAMILIES:
        pytest.skip(f"{family} is not registered")
    model = modalzoo.create_model(tiny_variant(family))
    model.config.variant = variant  # the card only reads the variant name; the tiny weights keep it fast
    card = render_model_card(model, f"me/{variant}")
    data = front_matter(card)
    assert data["base_model"] == base_model and data["license"] == licence
    assert f"[`{base_model}`](https://huggingface.co/{base_model})" in card.text
    if reported:
        assert f"| {reported} |" in card.text and "not re-measured here" in card.text
    assert "@" in card.text.split("## Citation")[1]  # a BibTeX entry
    without = front_matter(render_model_card(model, f"me/{variant}", base_model=None))
    assert "base_model" not in without


def test_model_index_round_trips_through_eval_result():
    model = modalzoo.create_model("reference-audio-tiny")
    evaluations = [
        {"dataset": {"name": "LibriTTS", "type": "mythicinfinity/libritts", "split": "test.clean"}, "metrics": {"stoi": 0.75}},
        {"format_version": 1, "dataset": "my/speech", "split": "dev", "metrics": {"si_sdr": 3.5, "pesq_wb": float("nan")}},
    ]
    card = ModelCard(str(render_model_card(model, "me/codec", metrics=evaluations)))
    results = card.data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_type, r.dataset_split) for r in results] == [
        ("stoi", 0.75, "mythicinfinity/libritts", "test.clean"),
        ("si_sdr", 3.5, "my/speech", "dev"),
    ]
    assert {r.task_type for r in results} == {"audio-to-audio"} and card.data.model_name == "codec"
    assert results[1].metric_name == "SI-SDR"


def test_metrics_from_a_modalzoo_eval_json_file(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"dataset": str(tmp_path), "split": None, "metrics": {"psnr": 30.0}}))
    (evaluation,) = normalize_evaluations(path)
    assert evaluation["dataset"] == {"name": tmp_path.name, "type": "local", "split": None}
    assert evaluation["metrics"] == {"psnr": 30.0}


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"metrics": {"psnr": 1.0}}, "needs a 'dataset'"),
        ({"dataset": {"name": "x"}, "metrics": {"psnr": 1.0}}, "'name' and 'type'"),
        ({"dataset": "a/b", "metrics": {}}, "non-empty 'metrics'"),
        ({"dataset": "a/b", "metrics": {"psnr": "high"}}, "must be a number"),
    ],
)
def test_malformed_metrics_are_refused_with_the_reason(metrics, message):
    with pytest.raises(ValueError, match=message):
        normalize_evaluations(metrics)


def test_families_without_a_template_get_the_default():
    assert template_path("a_future_family").name == "default.md"
    assert template_path("titok").name == "titok.md"
    model = modalzoo.create_model("reference-image-tiny")
    card = render_model_card(model, "me/x", template=template_path("a_future_family"))
    assert "license" not in front_matter(card)  # unknown: none is claimed
    assert "reference_image tokenizer (image)" in card.text and "No metrics have been measured" in card.text
    assert "No licence is recorded for the `reference_image` family yet" in card.text
    assert f"version = {{{modalzoo.__version__}}}" in card.text


def test_quick_start_for_continuous_variants_uses_latents():
    snippet = quick_start("me/vae", {"modality": "image", "codebook_sizes": [], "token_rate": None})
    assert "model.encode(**inputs).latents" in snippet and "decode(latents=latents)" in snippet
    assert "llm_ids" not in snippet
    facts_rows = cards.facts_table({"modality": "image", "image_size": 256, "max_tokens": 32, "codebook_sizes": [],
                                    "parameters": 1, "family": "titok", "variant": "titok-ll32-vae-c16"})
    assert "| Codebooks | none: continuous latents (no discrete codes) |" in facts_rows


def test_card_facts_give_bitrates():
    audio = cards.model_facts(modalzoo.create_model("reference-audio-tiny"))
    assert math.isclose(audio["bitrate_bps"], 250 * 2 * 5)
    assert "| Bitrate | 2.5 kbps (2500 bits per second) |" in cards.facts_table(audio)
    image = cards.model_facts(modalzoo.create_model("reference-image-tiny"))
    assert image["bits_per_item"] == 64 * 6
    assert "| Bitrate | 384 bits per image, 0.3750 bits per pixel |" in cards.facts_table(image)
    assert cli.model_facts is cards.model_facts


def test_save_for_hub_writes_the_card_last_and_refuses_pickles(tmp_path):
    model = modalzoo.create_model("reference-image-tiny")
    files = save_for_hub(model, tmp_path / "out", processor=modalzoo.create_processor("reference-image-tiny"), repo_id="me/x")
    assert files == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert [op.path_in_repo for op in _commit_operations(tmp_path / "out")][-1] == "README.md"
    (tmp_path / "dirty").mkdir()
    (tmp_path / "dirty" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors only"):
        save_for_hub(model, tmp_path / "dirty")
