"""Training data: `datasets` sources (image/audio folders, Hub datasets, streaming) and procedural
generators, cut into random crops as the originals do, in an order that is a pure function of
(seed, epoch, position).

That last property is what makes runs reproducible and resumable: the order of items and every
crop depend only on the seed, the epoch and the item's index, never on a worker's random state
or on the number of processes. Process r of W takes items [r*B, (r+1)*B) of each global batch of
W*B items, so W processes with batch B see exactly the items one process with batch W*B sees
(accelerate's sharded batch sampler splits the same way), and resuming at a data position
replays exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import importlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF

from .config import DataSection

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif", ".sph"}
IMAGE_COLUMNS = ("image", "img", "jpg", "png", "pixel_values")
AUDIO_COLUMNS = ("audio", "wav", "flac", "speech")


# ----- sources ------------------------------------------------------------------------------------
def parse_source(source: str) -> tuple[str, str]:
    """`imagefolder:PATH` / `audiofolder:PATH` / `hub:ID` / `procedural:NAME`; a bare existing
    path is a folder of the model's modality, anything else a Hub dataset id."""
    for kind in ("imagefolder", "audiofolder", "hub", "procedural"):
        if source.startswith(kind + ":"):
            return kind, source[len(kind) + 1 :]
    if Path(source).is_dir():
        return "folder", source
    return "hub", source


def _scan_audio_folder(path: str):
    """An audiofolder without `torchcodec` (which `datasets` needs to build Audio features):
    the same files, as a dataset of paths decoded here with soundfile."""
    import datasets

    files = sorted(str(p) for p in Path(path).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {path}")
    return datasets.Dataset.from_dict({"audio": files})


def load_source(section: DataSection, modality: str, *, source: str, split: str, seed: int):
    """A `datasets.Dataset` / `IterableDataset`, or a `ProceduralDataset`."""
    kind, argument = parse_source(source)
    if kind == "procedural":
        return ProceduralDataset(argument, modality, num_items=section.procedural_items)
    import datasets

    if kind == "folder":
        kind = "imagefolder" if modality == "image" else "audiofolder"
    if kind in ("imagefolder", "audiofolder"):
        if not Path(argument).is_dir():
            raise FileNotFoundError(f"data folder {argument} does not exist")
        try:
            dataset = datasets.load_dataset(kind, data_dir=argument, split=split, streaming=section.streaming)
        except (ImportError, datasets.exceptions.DatasetGenerationError) as error:
            if kind != "audiofolder" or "torchcodec" not in repr(error.__cause__ or error):
                raise
            dataset = _scan_audio_folder(argument)
            if section.streaming:
                dataset = dataset.to_iterable_dataset()
    else:
        dataset = datasets.load_dataset(argument, section.config_name, split=split, streaming=section.streaming)
    column = find_column(dataset, modality, section.column)
    if modality != "image":
        feature = (dataset.features or {}).get(column)
        if isinstance(feature, datasets.Audio) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    if section.streaming:
        dataset = dataset.shuffle(seed=seed, buffer_size=1000)
    return dataset.select_columns([column])


def find_column(dataset, modality: str, column: str | None) -> str:
    import datasets

    names = list(dataset.column_names or (dataset.features or {}).keys())
    if column:
        if column not in names:
            raise ValueError(f"data.column {column!r} not in the dataset's columns {names}")
        return column
    wanted = datasets.Image if modality == "image" else datasets.Audio
    for name, feature in (dataset.features or {}).items():
        if isinstance(feature, wanted):
            return name
    for name in IMAGE_COLUMNS if modality == "image" else AUDIO_COLUMNS:
        if name in names:
            return name
    raise ValueError(f"no {modality} column among {names}; set data.column in the recipe")


# ----- procedural data ------------------------------------------------------------------------------
class ProceduralDataset:
    """Items generated from their index: `shapes` (images of coloured rectangles and ellipses) and
    `tones` (audio: sums of gliding harmonic tones with envelopes). Generators registered in
    `modalzoo.data.PROCEDURAL` (name -> callable(index, rng) -> PIL image, (audio, rate), or the
    raw item a structured modality's processor reads) are used first."""

    def __init__(self, name: str, modality: str, *, num_items: int):
        self.name = name
        self.modality = modality
        self.num_items = num_items
        try:
            registry = getattr(importlib.import_module("modalzoo.data"), "PROCEDURAL", {})
        except ImportError:
            registry = {}
        builtin = {"shapes": _shapes, "tones": _tones}
        if name in registry:
            self.generate = registry[name]
        elif name in builtin:
            self.generate = builtin[name]
        else:
            raise ValueError(f"unknown procedural source {name!r}; known: {', '.join(sorted({*registry, *builtin}))}")

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int):
        return {"item": self.generate(index, np.random.default_rng([0x5EED, index]))}


def _shapes(index: int, rng: np.random.Generator, size: int = 128) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.integers(0, size - 8, 2)
        x1, y1 = np.array([x0, y0]) + rng.integers(8, size // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([int(x0), int(y0), int(x1), int(y1)], fill=colour)
    return image


def _tones(index: int, rng: np.random.Generator, rate: int = 16000, seconds: float = 1.0) -> tuple[np.ndarray, int]:
    t = np.arange(int(rate * seconds)) / rate
    audio = np.zeros_like(t)
    for _ in range(int(rng.integers(1, 4))):
        f0, f1 = rng.uniform(80, 1200, 2)
        phase = 2 * np.pi * np.cumsum(np.linspace(f0, f1, t.size)) / rate
        envelope = np.sin(np.pi * np.clip((t - rng.uniform(0, 0.5)) / rng.uniform(0.2, 0.6), 0, 1)) ** 2
        for harmonic in range(1, 4):
            audio += envelope * np.sin(harmonic * phase) / harmonic
    return (0.5 * audio / max(1e-6, np.abs(audio).max())).astype(np.float32), rate


# ----- decoding and crops ---------------------------------------------------------------------------
def decode_image(value) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes):
        return Image.open(io.BytesIO(value)).convert("RGB")
    if isinstance(value, (str, Path)):
        return Image.open(value).convert("RGB")
    if isinstance(value, np.ndarray):
        return Image.fromarray(value).convert("RGB")
    raise ValueError(f"cannot read an image from {type(value).__name__}")


def decode_audio(value) -> tuple[torch.Tensor, int]:
    """-> mono float32 `[samples]` and its rate."""
    if isinstance(value, tuple):
        array, rate = value
    elif isinstance(value, dict) and value.get("array") is not None:
        array, rate = value["array"], value["sampling_rate"]
    elif hasattr(value, "get_all_samples"):  # a torchcodec AudioDecoder
        samples = value.get_all_samples()
        array, rate = samples.data.numpy().T, samples.sample_rate
    else:
        if isinstance(value, dict):
            value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
        array, rate = soundfile.read(value, dtype="float32", always_2d=True)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=1) if array.shape[1] <= array.shape[0] else array.mean(axis=0)
    return torch.from_numpy(np.ascontiguousarray(array)), int(rate)


def crop_image(image: Image.Image, size: int, rng: np.random.Generator | None, flip: bool) -> torch.Tensor:
    """Shorter side resized to `size` (bicubic, antialiased, as the originals' loaders), then a
    random crop (`rng` given) or the centre crop, optionally a random horizontal flip.
    Returns float `[3, size, size]` in [0, 1]."""
    width, height = image.size
    scale = size / min(width, height)
    if scale != 1.0:
        image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BICUBIC)
    width, height = image.size
    if rng is None:
        left, top = (width - size) // 2, (height - size) // 2
    else:
        left, top = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
    pixels = TF.pil_to_tensor(image.crop((left, top, left + size, top + size))).float() / 255.0
    if rng is not None and flip and rng.random() < 0.5:
        pixels = pixels.flip(-1)
    return pixels


def crop_audio(
    audio: torch.Tensor, length: int, rng: np.random.Generator | None, gain_db: list[float] | None
) -> torch.Tensor:
    """Vocos / WavTokenizer's dataset: peak-normalised to a random level in `gain_db` (-3 dBFS
    in evaluation), repeated to `length` when shorter, else a random segment (the first in
    evaluation). Returns `[1, length]`."""
    if gain_db is not None:
        level = rng.uniform(*gain_db) if rng is not None else -3.0
        audio = audio * (10 ** (level / 20) / audio.abs().max().clamp_min(1e-8))
    if audio.shape[-1] < length:
        repeats = math.ceil(length / max(1, audio.shape[-1]))
        audio = audio.repeat(repeats)[:length]
    elif rng is not None:
        start = int(rng.integers(0, audio.shape[-1] - length + 1))
        audio = audio[start : start + length]
    else:
        audio = audio[:length]
    return audio[None]


@dataclass
class ItemTransform:
    """Raw dataset row -> model input tensor, deterministic in (seed, epoch, index)."""

    modality: str
    seed: int
    image_size: int | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    random_flip: bool = False
    sampling_rate: int | None = None
    segment_samples: int | None = None
    gain_db: list[float] | None = None
    train: bool = True

    def __call__(self, row: dict, epoch: int, index: int) -> torch.Tensor:
        value = next(iter(row.values()))
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        if self.modality == "image":
            pixels = crop_image(decode_image(value), self.image_size, rng, self.random_flip)
            low, high = self.value_range
            return pixels * (high - low) + low
        audio, rate = decode_audio(value)
        if rate == self.sampling_rate:
            return crop_audio(audio, self.segment_samples, rng, self.gain_db)
        # Crop at the source rate (plus a margin for the resampling filter), then resample only
        # the segment: resampling whole utterances would dominate the cost of a step.
        margin = 64
        source_length = math.ceil(self.segment_samples * rate / self.sampling_rate) + margin
        segment = crop_audio(audio, source_length, rng, self.gain_db)[0]
        return torchaudio.functional.resample(segment, rate, self.sampling_rate)[None, : self.segment_samples]

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        stacked = torch.stack(items)
        return {"pixel_values": stacked} if self.modality == "image" else {"input_values": stacked}


@dataclass
class ProcessorItemTransform:
    """Modalities whose items are structured (3D shapes, CAD sequences): the family's processor
    turns a raw item into training tensors (`training_item(value, rng)`, rng None in evaluation)
    and batches them (`collate_training_items(items)` -> the model's keyword inputs)."""

    processor: object
    seed: int
    train: bool = True
    segment_samples: int | None = None

    def __call__(self, row: dict, epoch: int, index: int):
        value = next(iter(row.values()))
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        return self.processor.training_item(value, rng)

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        return self.processor.collate_training_items(items)

    def length(self, item) -> int:
        """The padded dimension of an item (for `data.group_by_length`)."""
        return self.processor.training_item_length(item)


def build_transform(section: DataSection, processor, modality: str, seed: int, *, train: bool):
    if modality not in ("image", "audio", "speech"):
        for method in ("training_item", "collate_training_items"):
            if not hasattr(processor, method):
                raise ValueError(f"training on {modality!r} data needs {type(processor).__name__}.{method}()")
        return ProcessorItemTransform(processor, seed, train=train)
    if modality == "image":
        return ItemTransform(
            modality,
            seed,
            image_size=section.image_size or processor.image_size,
            value_range=tuple(getattr(processor, "value_range", (0.0, 1.0))),
            random_flip=section.random_flip,
            train=train,
        )
    if section.segment_seconds is None:
        raise ValueError("recipe: data.segment_seconds is required for audio (the length of the random training crops)")
    hop = getattr(processor, "hop_length", 1)
    segment = max(hop, int(round(section.segment_seconds * processor.sampling_rate)) // hop * hop)
    return ItemTransform(
        modality,
        seed,
        sampling_rate=processor.sampling_rate,
        segment_samples=segment,
        gain_db=section.gain_db,
        train=train,
    )


# ----- the order of items -----------------------------------------------------------------------------
@dataclass
class DataPosition:
    """How far a run has read: `batches` global batches into `epoch`."""

    epoch: int = 0
    batches: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches": self.batches}


class _MapItems(torch.utils.data.Dataset):
    def __init__(self, dataset, transform: ItemTransform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, index = key
        return self.transform(self.dataset[index], epoch, index)


class _ShardedBatches(torch.utils.data.Sampler):
    """Global batches of `batch_size * num_processes` items from a per-epoch permutation seeded
    by (seed, epoch); this process's slice of each; starting at `position`."""

    def __init__(self, num_items: int, *, batch_size: int, rank: int, world_size: int, seed: int, position: DataPosition):
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.position = position
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = num_items // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_items} items, fewer than one global batch "
                f"({batch_size} per process x {world_size} processes)"
            )

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.position.epoch, self.position.batches
        while True:
            order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            for batch in range(start, self.batches_per_epoch):
                first = batch * self.global_batch + self.rank * self.batch_size
                yield [(epoch, int(i)) for i in order[first : first + self.batch_size]]
            epoch, start = epoch + 1, 0


class TrainBatches:
    """An endless iterator of this process's batches, tracking the global data position."""

    def __init__(
        self,
        dataset,
        transform: ItemTransform,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        num_workers: int = 0,
        position: DataPosition | None = None,
        group_by_length: int = 1,
    ):
        self.dataset = dataset
        self.transform = transform
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.num_workers = num_workers
        self.position = position or DataPosition()
        if group_by_length < 1:
            raise ValueError(f"data.group_by_length must be >= 1, got {group_by_length}")
        if group_by_length > 1 and not hasattr(getattr(transform, "processor", None), "training_item_length"):
            raise ValueError("data.group_by_length needs items with a length (a processor with training_item_length(), "
                             "such as CAD sequences'); images and audio crops have one size")
        self.group = group_by_length
        self.streaming = not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__")
        if self.streaming and group_by_length > 1:
            raise ValueError("data.group_by_length works on map-style datasets (procedural, Hub, folders), not on streams")
        self._iterator = None

    def _grouped_collate(self, items: list) -> list[dict[str, torch.Tensor]]:
        """`group` batches' worth of items -> `group` batches of similar lengths (less padding)."""
        order = sorted(items, key=self.transform.length)
        return [self.transform.collate(order[first : first + self.batch_size]) for first in range(0, len(items), self.batch_size)]

    def _map_batches(self):
        group = self.group
        sampler = _ShardedBatches(
            len(self.dataset),
            batch_size=self.batch_size * group,
            rank=self.rank,
            world_size=self.world_size,
            seed=self.seed,
            position=DataPosition(self.position.epoch, self.position.batches // group),
        )
        skip = self.position.batches % group  # resumed inside a group
        loader = torch.utils.data.DataLoader(
            _MapItems(self.dataset, self.transform),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.transform.collate if group == 1 else self._grouped_collate,
            # a private generator: creating the iterator must not draw from the global RNG,
            # whose state checkpoints restore
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )
        batches_per_epoch = sampler.batches_per_epoch * group
        for loaded in loader:
            if group > 1:  # the sorted batches in an order drawn from (seed, epoch, group index)
                index = self.position.batches // group
                generator = torch.Generator().manual_seed((self.seed * 100_003 + self.position.epoch) * 100_003 + index)
                order = torch.randperm(group, generator=generator)
                loaded = [loaded[int(i)] for i in order]
            for batch in [loaded] if group == 1 else loaded[skip:]:
                self.position.batches += 1
                if self.position.batches == batches_per_epoch:
                    self.position.epoch, self.position.batches = self.position.epoch + 1, 0
                yield batch
            skip = 0

    def _stream_batches(self):
        global_batch = self.batch_size * self.world_size
        while True:
            epoch = self.position.epoch
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            stream = iter(self.dataset.skip(self.position.batches * global_batch))
            index = self.position.batches * global_batch
            while True:
                rows = []
                for _ in range(global_batch):
                    try:
                        rows.append(next(stream))
                    except StopIteration:
                        rows = None
                        break
                if rows is None:
                    break
                mine = rows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
                items = [self.transform(row, epoch, index + self.rank * self.batch_size + i) for i, row in enumerate(mine)]
                index += global_batch
                self.position.batches += 1
                yield self.transform.collate(items)
            if self.position.batches == 0:
                raise ValueError("the data stream holds fewer items than one global batch")
            self.position.epoch, self.position.batches = epoch + 1, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._stream_batches() if self.streaming else self._map_batches()
        return next(self._iterator)


def evaluation_batch(dataset, transform: ItemTransform, num_items: int) -> dict[str, torch.Tensor] | None:
    """The first `num_items` items with deterministic (centre / first-segment) crops."""
    items = []
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        for index in range(min(num_items, len(dataset))):
            items.append(transform(dataset[index], 0, index))
    else:
        for index, row in enumerate(dataset.take(num_items)):
            items.append(transform(row, 0, index))
    return transform.collate(items) if items else None
