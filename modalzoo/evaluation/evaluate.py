"""`modalzoo eval`: reconstruct a dataset through a tokenizer and score it.

`iter_items` reads the data (a folder or file of images / audio, or a `datasets` dataset);
`evaluate` runs encode -> decode under the family's pinned protocol and returns the result
dict documented in `modalzoo.evaluation`; `format_table` prints it.
"""

from __future__ import annotations

import copy
import datetime
import importlib.metadata
import io
import itertools
import platform
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..file_io import AUDIO_MODALITIES, read_item
from .audio_metrics import AUDIO_METRICS, AudioMetrics
from .codebook_metrics import CODEBOOK_METRICS, CodebookUsage
from .image_metrics import IMAGE_METRICS, ImageMetrics
from .protocols import protocol_for

RESULT_FORMAT_VERSION = 1

# name -> (label, unit, higher is better): what a table or a model card needs to show a value.
METRIC_INFO: dict[str, tuple[str, str, bool]] = {
    "psnr": ("PSNR", "dB", True),
    "ssim": ("SSIM", "", True),
    "lpips": ("LPIPS", "", False),
    "rfid": ("rFID", "", False),
    "pesq_wb": ("PESQ (wb)", "", True),
    "pesq_nb": ("PESQ (nb)", "", True),
    "stoi": ("STOI", "", True),
    "si_sdr": ("SI-SDR", "dB", True),
    "mel_distance": ("Mel distance", "", False),
    "stft_distance": ("MR-STFT distance", "", False),
    "codebook_usage": ("Codebook usage", "", True),
    "codebook_perplexity": ("Codebook perplexity", "", True),
    "codebook_entropy_bits": ("Codebook entropy", "bits", True),
}

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".opus", ".w64"}


def metrics_for(modality: str) -> tuple[str, ...]:
    if modality == "image":
        return IMAGE_METRICS + CODEBOOK_METRICS
    if modality in AUDIO_MODALITIES:
        return AUDIO_METRICS + CODEBOOK_METRICS
    raise ValueError(f"no reconstruction metrics for modality {modality!r} yet")


# ----- data --------------------------------------------------------------------------------------
def _image_extensions() -> set[str]:
    from PIL import Image

    return {extension for extension, name in Image.registered_extensions().items() if name in Image.OPEN}


def _files(folder: Path, modality: str) -> list[Path]:
    extensions = _image_extensions() if modality == "image" else AUDIO_EXTENSIONS
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in extensions)


def iter_items(data: str | Path, modality: str, *, split: str | None = None, max_items: int | None = None) -> Iterator[dict]:
    """Items as keyword arguments of the model's processor (`{"images": PIL}` or
    `{"raw_audio": array, "sampling_rate": rate}`), at most `max_items` of them.

    `data` is a folder (read recursively, sorted by path), a single file, or a `datasets`
    spec: a Hub id (`owner/name`, or `owner/name:config`) or a packaged builder with a local
    folder (`imagefolder:DIR`, `parquet:DIR`). Datasets are streamed, so `max_items` reads
    only what it needs; their first image / audio column is used.
    """
    path = Path(data)
    if path.is_dir():
        files = _files(path, modality)
        if not files:
            raise ValueError(f"{path} holds no {modality} files")
        items: Iterable[dict] = (read_item(file, modality) for file in files)
    elif path.is_file():
        items = iter([read_item(path, modality)])
    else:
        items = _iter_dataset(str(data), modality, split)
    return itertools.islice(items, max_items)


def _image_item(image) -> dict:
    mode = "RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"
    return {"images": image.convert(mode)}


def _audio_item(value: dict) -> dict:
    import soundfile

    source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if source is None:
        raise ValueError("an audio example holds neither bytes nor a path")
    samples, sampling_rate = soundfile.read(source, dtype="float32", always_2d=True)
    return {"raw_audio": samples.T.copy(), "sampling_rate": sampling_rate}


def _iter_dataset(spec: str, modality: str, split: str | None) -> Iterator[dict]:
    try:
        import datasets
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    except ImportError as error:
        raise ValueError(f"{spec!r} is not a local path; reading datasets needs `pip install datasets` ({error})") from error
    name, _, rest = spec.partition(":")
    options = {}
    if rest:
        options["data_dir" if name in _PACKAGED_DATASETS_MODULES else "name"] = rest
    dataset = datasets.load_dataset(name, split=split, streaming=True, **options)
    if split is None:
        preferred = [key for key in ("test", "validation", "train") if key in dataset] or list(dataset)
        dataset = dataset[preferred[0]]
    features = dataset.features or {}
    kind = datasets.Image if modality == "image" else datasets.Audio
    columns = [column for column, feature in features.items() if isinstance(feature, kind)]
    if not columns:
        raise ValueError(f"dataset {spec!r} has no {kind.__name__} column (features: {features})")
    column = columns[0]
    if modality != "image":
        # Decoded here with soundfile: `datasets` would need torchcodec and FFmpeg to decode audio.
        dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    for example in dataset:
        yield _image_item(example[column]) if modality == "image" else _audio_item(example[column])


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# ----- model round trip ------------------------------------------------------------------------
def decode_arguments(encoded) -> dict[str, Any]:
    """What `decode` takes for an `EncoderOutput`: codes (+ mask), or latents for continuous variants."""
    if encoded.codes is None:
        if encoded.latents is None:
            raise ValueError("encode returned neither codes nor latents")
        return {"latents": encoded.latents}
    arguments = {"codes": encoded.codes}
    if encoded.codes_mask is not None:
        arguments["codes_mask"] = encoded.codes_mask
    return arguments


def _to_device(inputs, device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in dict(inputs).items()}


def _configured_processor(processor, protocol: dict):
    """A copy of the image processor set to the protocol's resize / crop."""
    processor = copy.deepcopy(processor)
    if protocol["modality"] == "image":
        for attribute, key in (("resample", "resample"), ("do_center_crop", "center_crop"), ("image_size", "image_size")):
            if hasattr(processor, attribute):
                setattr(processor, attribute, protocol[key])
    return processor


def _unit_range(values: torch.Tensor, value_range) -> torch.Tensor:
    low, high = value_range
    return (values.detach().float().cpu() - low) / (high - low)


# ----- evaluation ------------------------------------------------------------------------------
@torch.inference_mode()
def evaluate(
    model,
    processor,
    items: Iterable[dict],
    *,
    protocol: dict | None = None,
    metrics: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    encode_options: dict | None = None,
    decode_options: dict | None = None,
    model_name: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Reconstructs `items` (see `iter_items`) with `model` and returns the result dict."""
    protocol = protocol or protocol_for(model)
    modality = model.modality
    requested = tuple(metrics) if metrics is not None else metrics_for(modality)
    unknown = set(requested) - set(metrics_for(modality))
    if unknown:
        raise ValueError(f"unknown {modality} metrics {sorted(unknown)}; choose from {metrics_for(modality)}")
    encode_options, decode_options = dict(encode_options or {}), dict(decode_options or {})
    model = model.to(device).eval()
    processor = _configured_processor(processor, protocol)
    codebook = CodebookUsage(model.codebook_sizes) if any(name in CODEBOOK_METRICS for name in requested) else None
    unavailable: dict[str, str] = {}
    notes: dict[str, str] = {}
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="eval", unit="item")

    def round_trip(inputs):
        inputs = _to_device(inputs, device)
        encoded = model.encode(**inputs, **encode_options)
        if codebook is not None and encoded.codes is not None:
            codebook.update(encoded.codes, encoded.codes_mask)
        return model.decode(**decode_arguments(encoded), **decode_options), encoded

    num_items = 0
    if modality == "image":
        scorer = ImageMetrics([m for m in requested if m in IMAGE_METRICS], device=device, lpips_net=protocol["lpips_net"])
        value_range = getattr(processor, "value_range", (0.0, 1.0))
        for batch in _batched(items, int(protocol["batch_size"])):
            inputs = processor(images=[item["images"] for item in batch], return_tensors="pt")
            decoded, _ = round_trip(inputs)
            scorer.update(_unit_range(inputs["pixel_values"], value_range), _unit_range(decoded.values, value_range))
            num_items += len(batch)
    else:
        rate = int(protocol["sampling_rate"])
        scorer = AudioMetrics(rate, [m for m in requested if m in AUDIO_METRICS], metric_sampling_rate=protocol["metric_sampling_rate"])
        skipped = []
        for batch in _batched(_references(items, processor, protocol, skipped), int(protocol["batch_size"])):
            inputs = processor([reference.numpy() for reference in batch], sampling_rate=rate, return_tensors="pt")
            decoded, _ = round_trip(inputs)
            values = decoded.values.detach().float().cpu()[:, 0]
            for index, reference in enumerate(batch):
                reconstruction = values[index, : reference.shape[-1]]
                if reconstruction.shape[-1] < reference.shape[-1]:  # a decoder that drops a tail
                    reconstruction = torch.nn.functional.pad(reconstruction, (0, reference.shape[-1] - reconstruction.shape[-1]))
                scorer.update(reference, reconstruction)
            num_items += len(batch)
        if skipped:
            notes["skipped_items"] = f"{len(skipped)} item(s) not evaluated: {skipped[0]}"
    if num_items == 0:
        raise ValueError("no items to evaluate")

    results = scorer.compute()
    if modality != "image":
        notes.update(scorer.notes)
    unavailable.update(scorer.unavailable)
    if codebook is not None:
        try:
            codebook_results = codebook.compute()
            results.update({name: value for name, value in codebook_results.items() if name in requested})
        except ValueError:
            unavailable.update({name: "continuous tokenizer: no codes" for name in requested if name in CODEBOOK_METRICS})
    protocol = {**protocol, "processor": type(processor).__name__}
    if encode_options or decode_options:
        protocol["encode_options"], protocol["decode_options"] = encode_options, decode_options
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "model": model_name or model.config.variant or model.config.model_type,
        "family": model.config.model_type,
        "variant": model.config.variant,
        "modality": modality,
        "dataset": None if dataset is None else str(dataset),
        "split": split,
        "num_items": num_items,
        "protocol": protocol,
        "metrics": {name: results[name] for name in requested if name in results},
        "unavailable": unavailable,
        "notes": notes,
        "environment": environment(device),
    }


def _references(items, processor, protocol, skipped: list) -> Iterator[torch.Tensor]:
    """Each audio item at the model's rate, mono, cropped to `max_seconds`: what is compared."""
    rate = int(protocol["sampling_rate"])
    limit = None if protocol.get("max_seconds") is None else int(float(protocol["max_seconds"]) * rate)
    for item in items:
        try:
            single = processor(**item, return_tensors="pt")
        except ValueError as error:  # shorter than one frame, silent channels layout, ...
            skipped.append(str(error))
            continue
        length = int(single["padding_mask"][0].sum())
        yield single["input_values"][0, 0, :length][:limit].clone()


def environment(device) -> dict[str, Any]:
    import modalzoo

    versions = {"modalzoo": modalzoo.__version__, "torch": torch.__version__}
    for package in ("torchmetrics", "pesq", "pystoi", "torch-fidelity"):
        try:  # metadata only: importing torchmetrics just for its version costs seconds
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        **versions,
        "python": platform.python_version(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_value(name: str, value: float) -> str:
    unit = METRIC_INFO.get(name, ("", "", True))[1]
    text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.4e}"
    return f"{text} {unit}".strip()


def format_table(result: dict) -> str:
    """A plain-text table of a result's metrics, with the protocol's essentials above it."""
    lines = [
        f"model {result['model']} ({result['family']}, {result['modality']}) on {result['dataset']}"
        + (f" [{result['split']}]" if result.get("split") else "")
        + f": {result['num_items']} item(s)",
    ]
    rows = [(METRIC_INFO.get(name, (name,))[0], format_value(name, value)) for name, value in result["metrics"].items()]
    rows += [(METRIC_INFO.get(name, (name,))[0], f"unavailable: {reason}") for name, reason in result["unavailable"].items()]
    width = max([len(label) for label, _ in rows] + [6])
    lines.append(f"{'metric':{width}}  value")
    lines.append(f"{'-' * width}  {'-' * 12}")
    lines += [f"{label:{width}}  {value}" for label, value in rows]
    for key, note in result.get("notes", {}).items():
        lines.append(f"note ({key}): {note}")
    return "\n".join(lines)
