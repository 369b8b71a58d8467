"""Trains the defaults shipped in `modalzoo/pretrained/` (what `modalzoo demo` runs) on CPU.

    python training/scripts/train_demo_models.py titok          # ~20 min on one CPU thread
    python training/scripts/train_demo_models.py wavtokenizer   # ~20 min on one CPU thread
    python training/scripts/train_demo_models.py data           # only write the data folders

Data (written under runs/demo_data/, never shipped):
* photos: scikit-image's bundled photographs, cut into random square crops at several scales
  (a few photographs alone would give one crop per image at 64 px); `chelsea` and `coffee` are
  held out (evaluation and the demo).
* speech: espeak-ng sentences in several voices and speeds, plus the recorded voices of
  alsa-utils' channel-test clips; the HELD_OUT_SENTENCES and alsa's Front_Center.wav are held out.

The recipes are training/recipes/titok_demo.yaml and wavtokenizer_demo.yaml; the final folder
(weights, config, processor, card with the training log) is copied to modalzoo/pretrained/<name>.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "runs" / "demo_data"
PRETRAINED = REPO / "modalzoo" / "pretrained"

TRAIN_PHOTOS = (
    "astronaut", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "camera", "coins",
    "moon", "brick", "grass", "gravel", "page", "text", "cell",
)  # fmt: skip
HELD_OUT_PHOTOS = ("chelsea", "coffee")
CROPS_PER_PHOTO = 48
CROP_SIDE = 80  # training crops are resized to this, the trainer then cuts random 64 px squares

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers turn sound into codes.",
    "A codec learns to rebuild the waveform.",
    "Seven silver swans swam silently seaward.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The rainbow is a division of white light into many beautiful colors.",
    "She sells sea shells by the sea shore.",
    "Training needs data, patience and a learning rate.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "When the sunlight strikes raindrops in the air, they act as a prism.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
)
HELD_OUT_SENTENCES = (
    "Codes in, speech out: the tokenizer rebuilds what it heard.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
)
VOICES = ("en-us", "en", "en-us+f3", "en+m3", "en-us+f2", "en-gb-scotland", "en+f4", "en-us+m7")
SPEEDS = (140, 170, 200)
ALSA = Path("/usr/share/sounds/alsa")
HELD_OUT_ALSA = ("Front_Center.wav",)
# The clip bundled with the package for `modalzoo demo` (a held-out sentence): see make_demo_clip.
DEMO_SENTENCE, DEMO_VOICE, DEMO_SPEED = HELD_OUT_SENTENCES[0], "en-us+f3", 160


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")


def prepare_photos(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    train, heldout = folder / "train", folder / "heldout"
    for path in (train, heldout):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    for name in TRAIN_PHOTOS:
        image = _photo(name)
        shorter = min(image.size)
        for index in range(CROPS_PER_PHOTO):
            # side from a quarter of the shorter side to all of it: fine texture and whole scenes
            side = int(rng.integers(max(CROP_SIDE, shorter // 4), shorter + 1))
            left = int(rng.integers(0, image.width - side + 1))
            top = int(rng.integers(0, image.height - side + 1))
            crop = image.crop((left, top, left + side, top + side))
            crop.resize((CROP_SIDE, CROP_SIDE), Image.Resampling.BICUBIC).save(train / f"{name}-{index:02d}.png")
    for name in HELD_OUT_PHOTOS:
        _photo(name).save(heldout / f"{name}.png")
    print(f"photos: {len(list(train.iterdir()))} training crops, held out {HELD_OUT_PHOTOS}")


def espeak(path: Path, sentence: str, voice: str, speed: int) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), sentence], check=True, capture_output=True)


def prepare_speech(folder: Path) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to write the speech data (apt-get install espeak-ng)")
    train, heldout = folder / "train", folder / "heldout"
    for path in (train, heldout):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    for index, sentence in enumerate(SENTENCES):
        for voice_index, voice in enumerate(VOICES):
            speed = SPEEDS[(index + voice_index) % len(SPEEDS)]
            espeak(train / f"s{index:02d}-{voice}.wav", sentence, voice, speed)
    for index, sentence in enumerate(HELD_OUT_SENTENCES):
        espeak(heldout / f"h{index}.wav", sentence, VOICES[index % len(VOICES)], 165)
    for clip in sorted(ALSA.glob("*.wav")) if ALSA.is_dir() else []:
        if clip.name == "Noise.wav":
            continue
        shutil.copy(clip, (heldout if clip.name in HELD_OUT_ALSA else train) / f"alsa-{clip.name}")
    print(f"speech: {len(list(train.iterdir()))} training clips, {len(list(heldout.iterdir()))} held out")


def make_demo_clip(path: Path) -> None:
    """The bundled demo clip: a held-out sentence, 16-bit mono WAV at espeak-ng's 22.05 kHz."""
    espeak(path, DEMO_SENTENCE, DEMO_VOICE, DEMO_SPEED)


SHIPPING_NOTE = """
## This shipped default

`modalzoo/pretrained/{name}`, what `modalzoo demo` runs; written by
`python training/scripts/train_demo_models.py {kind}` (recipe `training/recipes/{recipe}.yaml`) on
one CPU thread of a busy shared machine. Training data: {data} Held out: {held_out}

A small model trained for minutes, not a release: it shows the pipeline (codes, token counts,
decoding, metrics) end to end, offline. Expect reconstructions far from the published models'
quality; the evaluation above is on the held-out items.
"""
NOTES = {
    "titok": dict(recipe="titok_demo", data="random square crops (several scales) of scikit-image's bundled photographs "
                  + ", ".join(TRAIN_PHOTOS) + ".", held_out=", ".join(HELD_OUT_PHOTOS) + " (the demo photograph is chelsea)."),
    "wavtokenizer": dict(recipe="wavtokenizer_demo", data=f"{len(SENTENCES)} sentences by espeak-ng in {len(VOICES)} voices and "
                         "the recorded voices of alsa-utils' channel-test clips.",
                         held_out=f"{len(HELD_OUT_SENTENCES)} sentences (the demo clip says one of them) and alsa's Front_Center.wav."),
}


def train_and_ship(recipe: str, name: str, overrides: list[str]) -> Path:
    import torch

    from modalzoo.training import load_recipe, train

    torch.set_num_threads(1)
    result = train(load_recipe(recipe, overrides), resume=True)
    final = Path(result["final_dir"])
    target = PRETRAINED / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for file in final.iterdir():
        if file.suffix in (".json", ".safetensors", ".md", ".yaml"):
            shutil.copy(file, target / file.name)
    kind = name.split("_")[0]
    with open(target / "README.md", "a") as card:
        card.write(SHIPPING_NOTE.format(name=name, kind=kind, **NOTES[kind]))
    (target / "__init__.py").write_text(f'"""Shipped model folder `{name}` (a package so that wheels include its files)."""\n')
    print(f"shipped {final} -> {target}")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["data", "titok", "wavtokenizer"])
    parser.add_argument("overrides", nargs="*", help="recipe overrides key=value")
    args = parser.parse_args(argv)
    if args.what in ("data", "titok"):
        prepare_photos(DATA / "photos")
    if args.what in ("data", "wavtokenizer"):
        prepare_speech(DATA / "speech")
    if args.what == "titok":
        train_and_ship("titok_demo", "titok_demo", [f"data.source=imagefolder:{DATA / 'photos/train'}",
                       f"data.eval_source=imagefolder:{DATA / 'photos/heldout'}", f"output_dir={REPO / 'runs/titok_demo'}", *args.overrides])  # fmt: skip
    if args.what == "wavtokenizer":
        train_and_ship("wavtokenizer_demo", "wavtokenizer_demo", [f"data.source=audiofolder:{DATA / 'speech/train'}",
                       f"data.eval_source=audiofolder:{DATA / 'speech/heldout'}", f"output_dir={REPO / 'runs/wavtokenizer_demo'}", *args.overrides])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
