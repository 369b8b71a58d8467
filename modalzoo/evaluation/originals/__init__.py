"""Plugins that build a family's *original* implementation for `modalzoo bench --compare-original`.

One module per family, `modalzoo/evaluation/originals/<family>.py` (the family's `model_type`,
e.g. `titok.py`, `wavtokenizer.py`), exposing::

    def load_original(checkout: pathlib.Path, model: ModalTokenizer) -> OriginalImplementation:
        ...

* `checkout` is the user's clone of the original repository (`--compare-original PATH`). Import
  its code with `with checkout_on_path(checkout): ...` (below); never vendor it here.
* `model` is our model as benchmarked, already on its device and dtype. The plugin builds the
  original network with the SAME weights: derive the original config from `model.config` and
  the original state dict by running the family's converter in reverse (or, where the
  converter keeps a pure key map, invert `convert_state_dict` key by key), load it strictly,
  then `.eval()` and move it to `model.device` / `model.dtype`.
* It returns `OriginalImplementation(encode, decode)`, two callables that take exactly what our
  `model.encode` / `model.decode` take (the processor's tensors, e.g. `pixel_values=` or
  `input_values=` + `padding_mask=`; and `codes=` (+ `codes_mask=`) or `latents=`) and return
  our layouts: `encode` -> codes `[B, Q, T]` (a tensor or an `EncoderOutput`), `decode` ->
  values as our decode returns them (a tensor or a `DecoderOutput`). Translate layouts inside
  the callables; that translation is timed too, so keep it to views and casts.

The benchmark times both implementations in the same process, on the same input, with the
same repeats, reports original / modalzoo latency ratios, and checks that the codes agree and
how far the decoded values are apart (a plugin that loads different weights shows up there).
A plugin file outside the package can be used with `modalzoo bench --original-plugin FILE`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple


class OriginalImplementation(NamedTuple):
    encode: Callable
    decode: Callable


def load_plugin(family: str, plugin_file: str | Path | None = None) -> ModuleType:
    """The plugin module for `family`: `plugin_file` when given, else the packaged one."""
    if plugin_file is not None:
        path = Path(plugin_file)
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file: {path}")
        spec = importlib.util.spec_from_file_location(f"modalzoo_original_plugin_{family}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(f"{__name__}.{family}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{family}":
                raise
            raise ValueError(
                f"no --compare-original plugin for family {family!r}: add modalzoo/evaluation/originals/{family}.py "
                "(see the modalzoo.evaluation.originals docstring) or pass --original-plugin FILE"
            ) from None
    if not callable(getattr(module, "load_original", None)):
        raise ValueError(f"plugin {module.__name__} defines no load_original(checkout, model)")
    return module


def load_original(family: str, checkout: str | Path, model, plugin_file: str | Path | None = None) -> OriginalImplementation:
    checkout = Path(checkout)
    if not checkout.is_dir():
        raise FileNotFoundError(f"--compare-original expects a checkout folder of the original repository, got {checkout}")
    original = load_plugin(family, plugin_file).load_original(checkout, model)
    if isinstance(original, tuple) and len(original) == 2 and all(callable(fn) for fn in original):
        return OriginalImplementation(*original)
    raise ValueError(f"load_original for {family!r} must return (encode_fn, decode_fn), got {type(original).__name__}")


@contextlib.contextmanager
def checkout_on_path(checkout: str | Path, *module_prefixes: str) -> Iterator[Path]:
    """Makes a checkout importable while a plugin builds the original.

    Afterwards the checkout leaves `sys.path` and the modules it provided (those whose name
    starts with one of `module_prefixes`, e.g. "modeling", "decoder") leave `sys.modules`, so
    two checkouts with clashing top-level names can be compared one after the other. Objects
    built inside keep working: their modules stay referenced by them.
    """
    checkout = Path(checkout).resolve()
    sys.path.insert(0, str(checkout))
    before = set(sys.modules)
    try:
        yield checkout
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(checkout))
        for name in set(sys.modules) - before:
            if any(name == prefix or name.startswith(prefix + ".") for prefix in module_prefixes):
                del sys.modules[name]
