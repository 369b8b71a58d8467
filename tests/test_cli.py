import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

import modalzoo
from modalzoo.cli import main


@pytest.fixture(scope="module")
def saved_image_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image_model")
    modalzoo.create_model("reference-image-tiny").save_pretrained(folder)
    modalzoo.create_processor("reference-image-tiny").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_audio_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio_model")
    modalzoo.create_model("reference-audio-tiny").save_pretrained(folder)  # no processor file: built from config
    return folder


def test_list_json_reports_every_variant(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == {row["name"] for row in modalzoo.list_models()}


def test_info_prints_card_facts(capsys, saved_audio_model):
    assert main(["info", str(saved_audio_model), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["family"] == "reference_audio"
    assert facts["token_rate"] == 250.0
    assert facts["bitrate_bps"] == 250.0 * 2 * 5  # two codebooks of 32 entries
    assert facts["sampling_rate"] == 16000


def test_image_file_round_trip(tmp_path, photographs, saved_image_model):
    source = tmp_path / "coffee.png"
    Image.fromarray(photographs[1]).save(source)
    codes_path, output = tmp_path / "coffee.npy", tmp_path / "coffee_out.png"
    assert main(["encode", str(source), "--model", str(saved_image_model), "--output", str(codes_path)]) == 0
    codes = np.load(codes_path)
    assert codes.shape == (1, 64) and codes.dtype == np.int64
    assert main(["decode", str(codes_path), "--model", str(saved_image_model), "--output", str(output)]) == 0
    assert Image.open(output).size == (32, 32)


def test_speech_file_round_trip_keeps_length(tmp_path, speech_file, saved_audio_model):
    codes_path, output = tmp_path / "hello.npy", tmp_path / "hello_out.wav"
    assert main(["encode", str(speech_file), "--model", str(saved_audio_model), "--output", str(codes_path)]) == 0
    codes = np.load(codes_path)
    samples, rate = soundfile.read(speech_file)
    assert codes.shape == (2, int(np.ceil(np.ceil(len(samples) * 16000 / rate) / 64)))
    assert main(["decode", str(codes_path), "--model", str(saved_audio_model), "--output", str(output)]) == 0
    decoded, decoded_rate = soundfile.read(output)
    assert decoded_rate == 16000 and len(decoded) == codes.shape[1] * 64


def test_errors_are_reported_not_raised(tmp_path, capsys, saved_image_model):
    bad_codes = tmp_path / "bad.npy"
    np.save(bad_codes, np.full((1, 64), 999, dtype=np.int64))
    assert main(["decode", str(bad_codes), "--model", str(saved_image_model), "--output", str(tmp_path / "x.png")]) == 2
    assert "out of vocabulary" in capsys.readouterr().err
    not_an_image = tmp_path / "broken.png"
    not_an_image.write_bytes(b"not a png")
    assert main(["encode", str(not_an_image), "--model", str(saved_image_model)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["info", "no-such-variant-tiny"]) == 2


def test_console_script_is_installed():
    executable = shutil.which("modalzoo")
    command = [executable] if executable else [sys.executable, "-m", "modalzoo.cli"]
    result = subprocess.run([*command, "list"], capture_output=True, text=True, check=True)
    assert "reference-image-tiny" in result.stdout
