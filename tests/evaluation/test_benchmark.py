import json
from pathlib import Path

import pytest
import torch

import modalzoo
from modalzoo.cli import main
from modalzoo.evaluation.benchmark import BenchSettings, cast_model, default_models, measure_peak_memory, run_benchmark
from modalzoo.evaluation.originals import load_plugin

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--families", "reference_image,reference_audio", "--smoke", "--batch", "1,4", "--threads", "1", "--output-dir", str(output)]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # --threads holds for the run only
    return output


def test_smoke_bench_writes_json_markdown_and_plot_with_sane_numbers(smoke_run):
    stem = smoke_run / "cpu-fp32-eager-smoke"
    assert stem.with_suffix(".png").stat().st_size > 0
    result = json.loads(stem.with_suffix(".json").read_text())
    assert result["machine"]["cpu"] and result["machine"]["cpu_cores"] >= 1 and result["machine"]["torch"] == torch.__version__
    assert result["settings"]["threads"] == 1 and result["machine"]["torch_threads"] == 1
    rows = result["rows"]
    assert [(row["model"], row["batch_size"]) for row in rows] == [
        ("reference-image-tiny", 1), ("reference-image-tiny", 4), ("reference-audio-tiny", 1), ("reference-audio-tiny", 4),
    ]
    for row in rows:
        assert "error" not in row
        for stage in ("encode", "decode"):
            stats = row[f"{stage}_ms"]
            assert 0 < stats["min"] <= stats["q25"] <= stats["median"] <= stats["q75"] <= stats["max"]
            assert row[f"{stage}_items_per_s"] == pytest.approx(row["batch_size"] / stats["median"] * 1e3)
            assert row[f"{stage}_memory"]["peak_mb"] > 0 and row[f"{stage}_memory"]["delta_mb"] >= 0
    image, audio = rows[0], rows[2]
    assert image["tokens_per_item"] == 64 and "encode_rtf" not in image
    assert audio["tokens_per_second"] == pytest.approx(2 * 250, rel=0.02)  # 2 codebooks at 250 frames/s
    assert audio["encode_rtf"] == pytest.approx(audio["encode_ms"]["median"] / 1e3 / 0.25)
    markdown = stem.with_suffix(".md").read_text()
    assert "| reference-audio-tiny |" in markdown and "Machine:" in markdown and result["machine"]["cpu"] in markdown


def test_markdown_warns_when_other_processes_kept_the_cores_busy(smoke_run):
    from modalzoo.evaluation import render_markdown

    result = json.loads((smoke_run / "cpu-fp32-eager-smoke.json").read_text())
    result["machine"]["load_average_1m"] = {"start": 4 * result["machine"]["cpu_cores"], "end": 1.0}
    assert "Warning: other processes kept the cores busy" in render_markdown(result)


def test_peak_memory_sees_an_allocation_inside_the_call():
    def allocate():
        block = torch.ones(32 * 2**20 // 4)  # 32 MiB, touched
        return float(block[-1])

    memory = measure_peak_memory(allocate, torch.device("cpu"))
    assert memory["delta_mb"] >= 30 and memory["peak_mb"] >= memory["delta_mb"]


def test_compare_original_times_a_plugin_on_the_same_weights(tmp_path):
    settings = BenchSettings.for_smoke(batch_sizes=(2,))
    result = run_benchmark(
        ["reference-image-tiny"], settings, compare_original=HERE / "fake_original",
        original_plugin=HERE / "reference_image_original_plugin.py",
    )
    (row,) = result["rows"]
    original = row["original"]
    assert original["codes_match"] == 1.0 and original["values_max_abs_diff"] < 1e-5
    assert original["encode_ratio"] > 0 and original["decode_ratio"] > 0
    assert original["encode_ratio"] == pytest.approx(original["encode_ms"]["median"] / row["encode_ms"]["median"])
    from modalzoo.evaluation import render_markdown

    assert "encode ratio" in render_markdown(result)


def test_a_family_without_plugin_says_what_to_add():
    with pytest.raises(ValueError, match="modalzoo/evaluation/originals/reference_audio.py"):
        load_plugin("reference_audio")
    result = run_benchmark(["reference-audio-tiny"], BenchSettings.for_smoke(batch_sizes=(1,)), compare_original=HERE)
    assert "no --compare-original plugin" in result["rows"][0]["error"]


def test_bf16_keeps_codebooks_in_fp32_and_runs():
    model = cast_model(modalzoo.create_model("reference-image-tiny"), torch.bfloat16)
    assert model.patchify.weight.dtype == torch.bfloat16
    assert model.quantizer.vq._codebook.embed.dtype == torch.float32
    result = run_benchmark(["reference-audio-tiny"], BenchSettings.for_smoke(dtype="bf16", batch_sizes=(1,)))
    row = result["rows"][0]
    assert row["dtype"] == "bf16" and ("error" in row or row["encode_ms"]["median"] > 0)


def test_default_models_pick_tiny_or_first_release():
    assert default_models(["reference_image", "titok"], tiny=True) == ["reference-image-tiny", "titok-tiny"]
    assert default_models(["titok"]) == ["titok-l32"]
    assert default_models(["reference_audio"]) == ["reference-audio-tiny"]  # no release: its tiny one
    with pytest.raises(KeyError, match="unknown family"):
        default_models(["nope"])
