"""`modalzoo demo`: the shipped default tokenizers on a bundled photograph and speech clip, offline.

The two models in `modalzoo/pretrained/` were trained on CPU with the shared trainer
(training/scripts/train_demo_models.py, recipes titok_demo.yaml and wavtokenizer_demo.yaml); the
bundled samples in `modalzoo/data/samples/` were held out of their training data:

* `chelsea.png`: scikit-image's `chelsea` photograph (CC0), shorter side reduced to 128 px;
* `speech.wav`: a sentence none of the training clips says, synthesised once with espeak-ng
  (voice en-us+f3, 160 words/min, 22.05 kHz 16-bit) and shipped, so that the demo needs no
  speech synthesiser.

The demo encodes each sample to codes, decodes the codes, writes the reconstructions and a
side-by-side figure, and reports the codes, token counts, PSNR (image, at the model's 64 px)
and STOI (speech, at 16 kHz as codec papers compute it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image

PRETRAINED = Path(__file__).parent / "pretrained"
SAMPLES = Path(__file__).parent / "data" / "samples"
IMAGE_MODEL, AUDIO_MODEL = "titok_demo", "wavtokenizer_demo"
PHOTO, CLIP = "chelsea.png", "speech.wav"


@dataclass
class DemoResult:
    image_codes: list[int]
    image_tokens: int
    image_size: int
    psnr: float
    audio_codes: list[int]
    audio_tokens: int
    audio_seconds: float
    token_rate: float
    stoi: float
    files: dict[str, str]


def load_pretrained(name: str):
    """A shipped default (`titok_demo`, `wavtokenizer_demo`): model (eval mode) and processor."""
    from transformers import AutoModel

    from .cli import load_processor

    folder = PRETRAINED / name
    if not (folder / "config.json").is_file():
        available = sorted(p.name for p in PRETRAINED.iterdir() if (p / "config.json").is_file()) if PRETRAINED.is_dir() else []
        raise FileNotFoundError(f"no shipped model {name!r} in {PRETRAINED}; available: {available or 'none'}")
    model = AutoModel.from_pretrained(folder).eval()
    return model, load_processor(str(folder), model)


def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample {path} is missing (reinstall modalzoo: it ships with the package)")
    return path


@torch.no_grad()
def tokenize_photo(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """-> (input pixels [3, S, S] in [0, 1], codes [K], reconstruction [3, S, S] clamped, PSNR dB)."""
    from .evaluation.image_metrics import psnr_per_image, quantize_to_uint8_grid

    model, processor = load_pretrained(IMAGE_MODEL)
    inputs = processor(Image.open(path).convert("RGB"))
    encoded = model.encode(**inputs)
    values = model.decode(encoded.codes).values
    low, high = getattr(processor, "value_range", (0.0, 1.0))
    reference = (inputs["pixel_values"].float() - low) / (high - low)
    reconstruction = quantize_to_uint8_grid((values.float() - low) / (high - low))  # what a PNG holds
    psnr = float(psnr_per_image(reference, reconstruction)[0])
    return reference[0], encoded.codes[0, 0], reconstruction[0], psnr


@torch.no_grad()
def tokenize_speech(path: Path) -> tuple[np.ndarray, torch.Tensor, np.ndarray, int, float, float]:
    """-> (input at the model's rate, codes [F], reconstruction, rate, token rate, STOI)."""
    from .evaluation.audio_metrics import stoi

    model, extractor = load_pretrained(AUDIO_MODEL)
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    inputs = extractor([audio.mean(axis=1)], sampling_rate=rate)
    encoded = model.encode(**inputs)
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    reference = extractor.postprocess(inputs["input_values"], inputs.get("padding_mask"))[0]
    reconstruction = extractor.postprocess(decoded.values, decoded.values_mask)[0][: reference.shape[-1]]
    model_rate = model.config.sampling_rate
    score = stoi(torch.from_numpy(reference), torch.from_numpy(reconstruction), model_rate)
    return reference, encoded.codes[0, 0], reconstruction, model_rate, float(model.config.token_rate), score


def _image_file(pixels: torch.Tensor, path: Path, scale: int = 4) -> None:
    array = (pixels.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = Image.fromarray(array)
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(path)


def _figure(path: Path, photo, photo_rec, psnr, speech, speech_rec, rate, score) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), gridspec_kw={"height_ratios": [1.2, 1]})
    for axis, pixels, title in ((axes[0, 0], photo, "photograph (held out)"), (axes[0, 1], photo_rec, f"reconstruction, PSNR {psnr:.1f} dB")):
        axis.imshow(pixels.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        axis.set_title(title)
        axis.axis("off")
    for axis, audio, title in ((axes[1, 0], speech, "speech (held out)"), (axes[1, 1], speech_rec, f"reconstruction, STOI {score:.2f}")):
        with np.errstate(divide="ignore"):  # digital silence: log of 0 is drawn as the floor
            power, _, _, image = axis.specgram(audio, NFFT=512, Fs=rate, noverlap=384, cmap="magma")
        top = 10 * np.log10(max(float(power.max()), 1e-20))
        image.set_clim(top - 80, top)  # an 80 dB range: silence would otherwise stretch the scale
        axis.set_title(title)
        axis.set_xlabel("seconds")
        axis.set_ylabel("Hz")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def run_demo(output: str | Path = "modalzoo_demo") -> DemoResult:
    """Tokenizes the bundled photograph and speech clip and writes everything to `output`."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    photo, image_codes, photo_rec, psnr = tokenize_photo(_sample(PHOTO))
    speech, audio_codes, speech_rec, rate, token_rate, score = tokenize_speech(_sample(CLIP))

    files = {
        "photo": output / "photo.png",
        "photo_reconstruction": output / "photo_reconstruction.png",
        "speech": output / "speech.wav",
        "speech_reconstruction": output / "speech_reconstruction.wav",
        "figure": output / "demo.png",
        "codes": output / "codes.json",
        "summary": output / "summary.json",
    }
    _image_file(photo, files["photo"])
    _image_file(photo_rec, files["photo_reconstruction"])
    soundfile.write(files["speech"], speech, rate, subtype="PCM_16")
    soundfile.write(files["speech_reconstruction"], speech_rec, rate, subtype="PCM_16")
    if not _figure(files["figure"], photo, photo_rec, psnr, speech, speech_rec, rate, score):
        files.pop("figure")
    result = DemoResult(
        image_codes=image_codes.tolist(),
        image_tokens=int(image_codes.numel()),
        image_size=int(photo.shape[-1]),
        psnr=psnr,
        audio_codes=audio_codes.tolist(),
        audio_tokens=int(audio_codes.numel()),
        audio_seconds=speech.shape[-1] / rate,
        token_rate=token_rate,
        stoi=score,
        files={k: str(v) for k, v in files.items()},
    )
    files["codes"].write_text(json.dumps({"image": result.image_codes, "audio": result.audio_codes}))
    files["summary"].write_text(json.dumps(asdict(result), indent=2))
    return result


def _codes_line(codes: list[int], shown: int = 24) -> str:
    head = " ".join(str(c) for c in codes[:shown])
    return head + (f" ... ({len(codes) - shown} more)" if len(codes) > shown else "")


def format_report(result: DemoResult) -> str:
    lines = [
        f"image  {IMAGE_MODEL}: {PHOTO} at {result.image_size}x{result.image_size} px -> {result.image_tokens} tokens",
        f"       codes: {_codes_line(result.image_codes)}",
        f"       PSNR {result.psnr:.2f} dB",
        f"speech {AUDIO_MODEL}: {CLIP}, {result.audio_seconds:.2f} s -> {result.audio_tokens} tokens ({result.token_rate:g}/s)",
        f"       codes: {_codes_line(result.audio_codes)}",
        f"       STOI {result.stoi:.3f}",
        "wrote: " + ", ".join(result.files.values()),
    ]
    return "\n".join(lines)
