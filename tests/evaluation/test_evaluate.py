import io
import json
import math

import numpy as np
import pytest
import soundfile
from PIL import Image

import modalzoo
from modalzoo.cli import main
from modalzoo.evaluation import evaluate, format_table, iter_items, protocol_for
from modalzoo.models.reference import ReferenceAudioTokenizer

FAST_IMAGE_METRICS = "psnr,ssim,codebook_usage,codebook_perplexity"  # LPIPS / rFID need downloaded weights


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, photographs):
    folder = tmp_path_factory.mktemp("photos")
    for index, photograph in enumerate(photographs):
        Image.fromarray(photograph).save(folder / f"{index}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory, speech):
    clips, rate = speech
    folder = tmp_path_factory.mktemp("speech_folder")
    for index, clip in enumerate(clips):
        soundfile.write(folder / f"{index}.wav", clip, rate)
    return folder


class LosslessAudioCodec(ReferenceAudioTokenizer):
    """Codes are the 16-bit samples themselves: decode(encode(x)) == x up to 16-bit rounding,
    so every metric must read 'perfect' unless evaluation misaligns or mis-scales something."""

    @property
    def codebook_sizes(self):
        return [65536]

    def encode(self, input_values, *, padding_mask=None):
        codes = ((input_values.clamp(-1, 1) + 1) * 32767.5).round().long()
        mask = None if padding_mask is None else padding_mask.bool()
        return modalzoo.EncoderOutput(codes=codes, codes_mask=mask)

    def decode(self, codes, *, codes_mask=None):
        values = codes.float() / 32767.5 - 1
        return modalzoo.DecoderOutput(values=values, values_mask=codes_mask)


def test_eval_cli_on_a_photo_folder_prints_a_table_and_writes_the_result(tmp_path, photo_folder, capsys):
    output = tmp_path / "result.json"
    argv = ["eval", "--model", "reference-image-tiny", "--data", str(photo_folder), "--metrics", FAST_IMAGE_METRICS, "--output", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "Codebook usage" in printed
    result = json.loads(output.read_text())
    assert {"model", "family", "protocol", "metrics", "num_items", "dataset"} <= set(result)
    assert result["model"] == "reference-image-tiny" and result["family"] == "reference_image"
    assert result["num_items"] == 3 and result["dataset"] == str(photo_folder)
    assert list(result["metrics"]) == FAST_IMAGE_METRICS.split(",")
    assert all(math.isfinite(value) for value in result["metrics"].values())
    assert 0 < result["metrics"]["codebook_usage"] <= 1
    assert 1 <= result["metrics"]["codebook_perplexity"] <= 64
    protocol = result["protocol"]
    assert protocol["image_size"] == 32 and protocol["resample"] == "bicubic" and protocol["center_crop"] is True
    assert protocol["processor"] == "ReferenceImageProcessor"


def test_lossless_codec_scores_perfectly_on_real_speech(speech_folder):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    model = LosslessAudioCodec(modalzoo.create_config("reference-audio-tiny")).eval()
    processor = modalzoo.create_processor("reference-audio-tiny")
    protocol = protocol_for(model, batch_size=2)  # a padded batch: masks must keep items apart
    result = evaluate(model, processor, iter_items(speech_folder, "audio"), protocol=protocol, dataset=str(speech_folder))
    metrics = result["metrics"]
    assert result["num_items"] == 2 and result["protocol"]["overridden"] == ["batch_size"]
    assert metrics["si_sdr"] > 60 and metrics["stoi"] > 0.999 and metrics["pesq_wb"] > 4.5
    assert metrics["mel_distance"] < 0.05 and metrics["stft_distance"] < 0.05
    assert 0 < metrics["codebook_usage"] < 1
    assert "SI-SDR" in format_table(result)


def test_random_codec_scores_worse_than_lossless(speech_folder):
    model = modalzoo.create_model("reference-audio-tiny")
    processor = modalzoo.create_processor("reference-audio-tiny")
    items = iter_items(speech_folder, "audio", max_items=1)
    result = evaluate(model, processor, items, metrics=["si_sdr", "mel_distance", "codebook_usage"], dataset="speech")
    assert result["num_items"] == 1
    assert result["metrics"]["si_sdr"] < 10 and result["metrics"]["mel_distance"] > 0.5
    assert result["protocol"]["sampling_rate"] == 16000 and result["protocol"]["metric_sampling_rate"] == 16000


def test_datasets_imagefolder_is_read_offline_with_max_items(photo_folder):
    pytest.importorskip("datasets")
    items = list(iter_items(f"imagefolder:{photo_folder}", "image", max_items=2))
    assert len(items) == 2 and all(isinstance(item["images"], Image.Image) for item in items)


def test_hub_layout_audio_dataset_is_read_without_torchcodec(tmp_path, speech):
    """Hub audio datasets are parquet files of {bytes, path} structs; they are decoded with
    soundfile, so `datasets`' own audio decoding (torchcodec + FFmpeg) is never needed."""
    pytest.importorskip("datasets")
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    clips, rate = speech
    encoded = []
    for clip in clips:
        buffer = io.BytesIO()
        soundfile.write(buffer, clip, rate, format="FLAC")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    table = pyarrow.table({
        "audio": pyarrow.array(encoded, type=pyarrow.struct({"bytes": pyarrow.binary(), "path": pyarrow.string()})),
        "text": ["fox", "codes"],
    })
    features = {"audio": {"_type": "Audio"}, "text": {"dtype": "string", "_type": "Value"}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    (tmp_path / "data").mkdir()
    parquet.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    items = list(iter_items(f"parquet:{tmp_path / 'data'}", "audio", split="test"))
    assert [item["sampling_rate"] for item in items] == [rate, rate]
    np.testing.assert_allclose(items[1]["raw_audio"][0], clips[1], atol=1e-4)


def test_protocols_are_pinned_per_family_and_overrides_are_recorded():
    titok = protocol_for(modalzoo.create_model("titok-tiny"))
    assert titok["reference_set"].startswith("ImageNet-1k validation") and titok["resample"] == "bicubic"
    audio = protocol_for(modalzoo.create_model("wavtokenizer-tiny"), max_seconds=4)
    assert audio["sampling_rate"] == 24000 and audio["reference_set"] == "LibriTTS test-clean"
    assert audio["max_seconds"] == 4 and audio["overridden"] == ["max_seconds"]
    with pytest.raises(ValueError, match="facts of the model"):
        protocol_for(modalzoo.create_model("reference-image-tiny"), image_size=64)
    with pytest.raises(ValueError, match="unknown protocol entries"):
        protocol_for(modalzoo.create_model("reference-image-tiny"), crop="random")


def test_bad_data_is_refused_with_a_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        iter_items(tmp_path / "empty", "image")
    model = modalzoo.create_model("reference-image-tiny")
    with pytest.raises(ValueError, match="unknown image metrics"):
        evaluate(model, modalzoo.create_processor("reference-image-tiny"), [], metrics=["pesq_wb"])
    assert main(["eval", "--model", "reference-image-tiny", "--data", str(tmp_path / "empty")]) == 2


def test_evaluate_takes_items_from_memory_too(photographs):
    model = modalzoo.create_model("reference-image-tiny")
    processor = modalzoo.create_processor("reference-image-tiny")
    result = evaluate(model, processor, [{"images": Image.fromarray(photographs[0])}], metrics=["psnr"])
    assert result["num_items"] == 1 and set(result["metrics"]) == {"psnr"} and result["unavailable"] == {}
    assert math.isfinite(result["metrics"]["psnr"]) and result["dataset"] is None
