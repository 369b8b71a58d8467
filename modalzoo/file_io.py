"""Reading and writing one item of a modality from / to a file, for the command line.

`read_item` returns the keyword arguments of the model's processor; `write_item` turns decoded
`values` into a file through the processor's `postprocess`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

AUDIO_MODALITIES = ("audio", "speech")


def read_item(path: str | Path, modality: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if modality == "image":
        try:
            with Image.open(path) as image:
                return {"images": image.convert("RGBA") if image.mode in ("RGBA", "LA", "P") else image.convert("RGB")}
        except Exception as error:  # PIL raises many types for corrupt files
            raise ValueError(f"{path} is not a readable image: {error}") from error
    if modality in AUDIO_MODALITIES:
        try:
            samples, sampling_rate = soundfile.read(path, dtype="float32", always_2d=True)
        except Exception as error:
            raise ValueError(f"{path} is not a readable audio file: {error}") from error
        return {"raw_audio": np.ascontiguousarray(samples.T), "sampling_rate": sampling_rate}
    raise ValueError(f"the command line does not read {modality!r} files yet")


def write_item(processor, values, values_mask, path: str | Path, modality: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if modality == "image":
        processor.postprocess(values)[0].save(path)
    elif modality in AUDIO_MODALITIES:
        audio = processor.postprocess(values, values_mask)[0]
        soundfile.write(path, audio, processor.sampling_rate)
    else:
        raise ValueError(f"the command line does not write {modality!r} files yet")
    return path
