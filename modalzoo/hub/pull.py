"""Loading from the Hub with errors that say what is missing (repo, file, revision, token)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import hf_hub_download

from .errors import hub_step


def from_pretrained(spec: str | Path, *, revision: str | None = None, token: str | bool | None = None, **kwargs):
    """`AutoModel.from_pretrained(spec)` for a modalzoo folder or Hub repo; a repo without
    `config.json`, a missing repo or revision, or a rejected token raise `HubError` naming it
    (transformers would report a missing config as an unrecognised model type)."""
    from transformers import AutoModel

    from .. import models  # noqa: F401  (registers the families)

    with hub_step("loading", str(spec)):
        if not Path(spec).is_dir():
            hf_hub_download(str(spec), "config.json", revision=revision, token=token)
        return AutoModel.from_pretrained(spec, revision=revision, token=token, **kwargs)
