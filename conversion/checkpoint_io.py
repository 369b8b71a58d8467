"""Opening original checkpoints without running code from them.

Pickle checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`) are read with `torch.load(weights_only=True)`
plus an explicit allow-list of the few non-tensor globals that PyTorch-Lightning training
checkpoints hold (hyper-parameter dicts, numpy scalars in callback states, version strings).
Anything else is refused with an error that names the global; `trust_pickle=True` (the CLI's
`--trust-pickle`) lifts the restriction for files the user trusts.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ALLOWED_GLOBALS", "UnsafeCheckpointError", "load_checkpoint", "state_dict_of"]


class _AttributeDict(dict):
    """Data-only stand-in for Lightning's `AttributeDict` (a dict with attribute access), so
    checkpoints that pickled hyper-parameters as one load without Lightning installed."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _numpy_entries() -> dict[str, Any]:
    entries = {"numpy.dtype": np.dtype}
    scalar = getattr(getattr(np, "_core", np.core), "multiarray").scalar
    entries["numpy.core.multiarray.scalar"] = scalar
    entries["numpy._core.multiarray.scalar"] = scalar
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        dtype_class = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_class is not None:
            entries[f"numpy.dtypes.{name}"] = dtype_class
    return entries


def _allowed_globals() -> dict[str, Any]:
    import argparse
    import pathlib

    entries: dict[str, Any] = {
        # hyper-parameters saved by `save_hyperparameters` (Lightning 1.x and 2.x module paths)
        "pytorch_lightning.utilities.parsing.AttributeDict": _AttributeDict,
        "lightning.pytorch.utilities.parsing.AttributeDict": _AttributeDict,
        "lightning_fabric.utilities.data.AttributeDict": _AttributeDict,
        "lightning.fabric.utilities.data.AttributeDict": _AttributeDict,
        "argparse.Namespace": argparse.Namespace,
        "pathlib.PosixPath": pathlib.PosixPath,
        "pathlib.PurePosixPath": pathlib.PurePosixPath,
        "torch.torch_version.TorchVersion": torch.torch_version.TorchVersion,
    }
    entries.update(_numpy_entries())
    return entries


# Name of the pickled global -> the object it is rebuilt with. Every entry only rebuilds data.
ALLOWED_GLOBALS: dict[str, Any] = _allowed_globals()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs a pickle global outside the allow-list."""

    def __init__(self, path: str | Path, refused: list[str]):
        self.path = str(path)
        self.refused = refused
        names = ", ".join(refused)
        super().__init__(
            f"refusing to unpickle {names} from {path}: not on modalzoo's allow-list of checkpoint globals, "
            f"and loading it could run code stored in the file. If you trust this file, rerun with "
            f"--trust-pickle (trust_pickle=True)."
        )


def _safe_global_entries() -> list:
    return [(obj, name) for name, obj in ALLOWED_GLOBALS.items()]


def _refused_globals(path: Path) -> list[str]:
    """GLOBALs of a zip-format checkpoint that neither torch nor our allow-list accepts."""
    with torch.serialization.safe_globals(_safe_global_entries()):
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    return [name for name in found if name not in ALLOWED_GLOBALS]


def load_checkpoint(path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu") -> Any:
    """Loads a `.safetensors` file, or a torch pickle checkpoint (zip or legacy format) without
    executing code unless `trust_pickle`. Raises `UnsafeCheckpointError` naming the refused
    global(s)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device=map_location)
    is_zip = zipfile.is_zipfile(path)
    if trust_pickle:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=is_zip)
    if is_zip:
        refused = _refused_globals(path)
        if refused:
            raise UnsafeCheckpointError(path, refused)
    with torch.serialization.safe_globals(_safe_global_entries()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as error:
            match = re.search(r"(?:Unsupported global: GLOBAL|global) ([\w.]+)", str(error))
            if match is None:
                raise
            raise UnsafeCheckpointError(path, [match.group(1)]) from None


def state_dict_of(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint: Lightning's `state_dict`, common wrappers
    (`model`, `generator`, `module`), or the object itself when it is already a state dict."""
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model", "generator", "module"):
            inner = checkpoint.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                return inner
        if checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
            return checkpoint
    raise ValueError("the checkpoint holds no state dict (looked for 'state_dict', 'model', 'generator', 'module')")


def check_architecture_matches(config, inferred, source: str, fields) -> None:
    """Raises when `config` (from a yaml / variant named by `source`) disagrees with the
    architecture `inferred` from the checkpoint's tensor shapes on any of `fields`."""
    mismatched = [
        f"{name}: {source} says {getattr(config, name)}, checkpoint has {getattr(inferred, name)}"
        for name in fields
        if getattr(config, name) != getattr(inferred, name)
    ]
    if mismatched:
        raise ValueError(f"the checkpoint does not match {source}:\n  " + "\n  ".join(mismatched))


def save_converted(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], processor, output: str | Path) -> Path:
    """Loads mapped weights that must cover every model key and nothing else, then writes a folder
    that `from_pretrained` loads (weights, config, processor)."""
    result = model.load_state_dict(state_dict, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"unexpected keys: {result.unexpected_keys}")
    if result.missing_keys:
        raise ValueError(f"the checkpoint lacks {len(result.missing_keys)} model keys: {', '.join(result.missing_keys[:20])}")
    output_path = Path(output)
    output_path.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(output_path)
    processor.save_pretrained(output_path)
    return output_path


def model_shapes(model_class, config) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of `model_class(config)` with its shape, built on the meta device."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_fits_model(
    mapped: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], *, require_all: bool = False, limit: int | None = None
) -> None:
    """Raises, listing each problem, when a mapped key has another shape than the model's, is not a
    model key, or (`require_all`) when a model key has no value; `limit` caps the list."""
    problems = [
        f"{key}: checkpoint {tuple(value.shape)}, model {expected[key]}"
        for key, value in mapped.items()
        if key in expected and tuple(value.shape) != expected[key]
    ]
    problems += [f"{key}: not in the model" for key in sorted(set(mapped) - set(expected))]
    if require_all:
        problems += [f"{key}: missing from the checkpoint" for key in sorted(set(expected) - set(mapped))]
    if problems:
        raise ValueError("checkpoint does not fit the config:\n  " + "\n  ".join(problems[:limit]))
