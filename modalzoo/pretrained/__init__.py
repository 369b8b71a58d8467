"""Tokenizers trained here and shipped inside the package (what `modalzoo demo` runs).

Each subfolder is a `save_pretrained` folder (config, safetensors weights, processor, card with
the training log and recipe) that loads with `AutoModel.from_pretrained(folder)` after
`import modalzoo`. The demo's two folders use underscores and hold an `__init__.py`: that makes
them packages, so the package-data globs ship their files in wheels as well as in editable
installs. The two `modalzoo demo` uses:

* `titok_demo`: a 64 px, 32-token TiTok (256 codes), recipe training/recipes/titok_demo.yaml;
* `wavtokenizer_demo`: a 24 kHz, 75 tokens/s WavTokenizer (256 codes), recipe
  training/recipes/wavtokenizer_demo.yaml.

Both were trained on one CPU thread by training/scripts/train_demo_models.py; see their cards.
"""

from pathlib import Path

FOLDER = Path(__file__).parent


def path(name: str) -> Path:
    """The folder of a shipped model, e.g. `path("titok_demo")`."""
    folder = FOLDER / name
    if not (folder / "config.json").is_file():
        available = sorted(p.name for p in FOLDER.iterdir() if (p / "config.json").is_file())
        raise FileNotFoundError(f"no shipped model {name!r} in {FOLDER}; available: {', '.join(available) or 'none'}")
    return folder
