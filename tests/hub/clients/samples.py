"""Deterministic inputs and code extraction shared by the client scripts (modalzoo-free, so the
remote-code client can use it where modalzoo is not importable)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def sample_inputs(processor):
    """Two items of different sizes for the processor's modality, the same in every process."""
    rng = np.random.default_rng(1234)
    main_input = processor.model_input_names[0]
    if main_input == "pixel_values":
        images = [rng.integers(0, 256, (40, 52, 3), dtype=np.uint8), rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)]
        return processor(images, return_tensors="pt")
    if main_input == "input_values":
        rate = processor.sampling_rate
        clips = [(0.1 * rng.standard_normal(rate // 4)).astype(np.float32), (0.1 * rng.standard_normal(rate // 6)).astype(np.float32)]
        return processor(clips, sampling_rate=rate, return_tensors="pt")
    raise NotImplementedError(f"no sample input for a processor whose main input is {main_input!r}")


def encode(model, processor) -> dict:
    """codes (and codes_mask) of the sample inputs, as lists for JSON."""
    with torch.no_grad():
        encoded = model.eval().encode(**sample_inputs(processor))
    codes = None if encoded.codes is None else encoded.codes.tolist()
    mask = None if encoded.codes_mask is None else encoded.codes_mask.int().tolist()
    latents = None if encoded.codes is not None or encoded.latents is None else encoded.latents.flatten()[:64].tolist()
    return {"codes": codes, "codes_mask": mask, "latents": latents}


def write_report(report: dict) -> None:
    """Writes REPORT (argv[1]) atomically: a client waiting for it never reads half a file."""
    path = Path(sys.argv[1])
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, path)


def wait_for_go(timeout: float = 600.0) -> None:
    """Blocks until the file named by HUB_CLIENT_WAIT_FOR exists (if set): clients start, and pay
    for their imports, while the client they depend on is still working."""
    path = os.environ.get("HUB_CLIENT_WAIT_FOR")
    deadline = time.monotonic() + timeout
    while path and not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.05)
