"""Procedural data and bundled samples.

`PROCEDURAL` maps a name to a generator `(index, rng) -> item`; `modalzoo train` reads it for
`data.source: procedural:NAME`, and structured items (3D shapes, CAD sequences) go through the
family processor's `training_item` / `collate_training_items`. Modules below register their
generators on import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PROCEDURAL: dict[str, Callable[[int, np.random.Generator], object]] = {}


def register_procedural(name: str):
    """Decorator: `@register_procedural("shapes3d")` on a generator `(index, rng) -> item`."""

    def register(generator):
        PROCEDURAL[name] = generator
        return generator

    return register

from . import shapes3d  # noqa: E402,F401  (registers procedural:shapes3d)
