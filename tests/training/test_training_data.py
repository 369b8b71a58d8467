"""Training data: datasets folders, random crops that depend only on (seed, epoch, index), the
per-process split of global batches, streaming, and resuming at a data position."""

from __future__ import annotations

import pytest
import torch

from modalzoo import create_processor
from modalzoo.training.config import DataSection
from modalzoo.training.data import DataPosition, TrainBatches, build_transform, evaluation_batch, load_source, parse_source


def _image_data(photo_folder, **options):
    section = DataSection(source=f"imagefolder:{photo_folder}", **options)
    processor = create_processor("reference-image-tiny")
    dataset = load_source(section, "image", source=section.source, split="train", seed=0)
    return section, dataset, build_transform(section, processor, "image", seed=0, train=True)


def test_parse_source(tmp_path):
    assert parse_source("imagefolder:/data/x") == ("imagefolder", "/data/x")
    assert parse_source("procedural:shapes") == ("procedural", "shapes")
    assert parse_source("hub:user/set") == ("hub", "user/set")
    assert parse_source(str(tmp_path)) == ("folder", str(tmp_path))
    assert parse_source("user/set") == ("hub", "user/set")


def test_imagefolder_random_crops_are_a_function_of_seed_epoch_and_index(photo_folder):
    section, dataset, transform = _image_data(photo_folder, random_flip=True)
    assert len(dataset) == 8
    first = transform(dataset[1], 0, 1)
    assert first.shape == (3, 32, 32) and 0.0 <= first.min() and first.max() <= 1.0
    assert torch.equal(first, transform(dataset[1], 0, 1))
    # the coffee photograph is wider than tall: crops move along it from epoch to epoch
    crops = {tuple(transform(dataset[1], epoch, 1).flatten()[:64].tolist()) for epoch in range(6)}
    assert len(crops) > 1
    evaluation = build_transform(section, create_processor("reference-image-tiny"), "image", seed=0, train=False)
    assert torch.equal(evaluation(dataset[1], 0, 1), evaluation(dataset[1], 5, 1))


def test_processes_split_each_global_batch_like_one_process(photo_folder):
    _, dataset, transform = _image_data(photo_folder)
    single = TrainBatches(dataset, transform, batch_size=4, rank=0, world_size=1, seed=3)
    ranks = [TrainBatches(dataset, transform, batch_size=2, rank=r, world_size=2, seed=3) for r in range(2)]
    for _ in range(5):  # crosses epochs (2 global batches per epoch)
        whole = next(single)["pixel_values"]
        parts = torch.cat([next(r)["pixel_values"] for r in ranks])
        assert torch.equal(whole, parts)
    assert single.position == DataPosition(epoch=2, batches=1) == ranks[0].position


def test_resuming_at_a_data_position_replays_the_same_batches(photo_folder):
    _, dataset, transform = _image_data(photo_folder)
    straight = TrainBatches(dataset, transform, batch_size=3, rank=0, world_size=1, seed=0)
    batches = [next(straight)["pixel_values"] for _ in range(5)]
    resumed = TrainBatches(dataset, transform, batch_size=3, rank=0, world_size=1, seed=0, position=DataPosition(1, 1))
    for expected in batches[3:]:
        assert torch.equal(next(resumed)["pixel_values"], expected)


def test_streaming_imagefolder(photo_folder):
    section, dataset, transform = _image_data(photo_folder, streaming=True)
    batches = TrainBatches(dataset, transform, batch_size=4, rank=0, world_size=1, seed=0)
    seen = [next(batches)["pixel_values"] for _ in range(3)]
    assert all(batch.shape == (4, 3, 32, 32) for batch in seen)
    assert batches.position == DataPosition(epoch=1, batches=1)
    resumed = TrainBatches(dataset, transform, batch_size=4, rank=0, world_size=1, seed=0, position=DataPosition(0, 1))
    assert torch.equal(next(resumed)["pixel_values"], seen[1])


def test_audiofolder_segments(speech_folder):
    section = DataSection(source=f"audiofolder:{speech_folder}", segment_seconds=0.3, gain_db=[-6.0, -1.0])
    processor = create_processor("reference-audio-tiny")
    dataset = load_source(section, "audio", source=section.source, split="train", seed=0)
    transform = build_transform(section, processor, "audio", seed=0, train=True)
    batch = next(TrainBatches(dataset, transform, batch_size=4, rank=0, world_size=1, seed=0))["input_values"]
    # 0.3 s at 16 kHz (a whole number of 64-sample frames)
    assert batch.shape == (4, 1, 4800)
    peaks = batch.abs().amax(-1)
    assert ((peaks <= 10 ** (-1 / 20) + 1e-4) & (peaks > 0.05)).all()
    evaluation = evaluation_batch(dataset, build_transform(section, processor, "audio", seed=0, train=False), 2)
    assert evaluation["input_values"].shape == (2, 1, 4800)


def test_short_audio_is_repeated_to_the_segment_length(speech_folder):
    section = DataSection(source=f"audiofolder:{speech_folder}", segment_seconds=8.01)
    processor = create_processor("reference-audio-tiny")
    dataset = load_source(section, "audio", source=section.source, split="train", seed=0)
    item = build_transform(section, processor, "audio", seed=0, train=True)(dataset[0], 0, 0)
    assert item.shape == (1, 128128)  # 8.01 s rounded down to whole 64-sample frames
    assert item.abs().amax() > 0 and item[0, -1000:].abs().amax() > 0


def test_audio_needs_a_segment_length(speech_folder):
    with pytest.raises(ValueError, match="segment_seconds"):
        build_transform(DataSection(source="x"), create_processor("reference-audio-tiny"), "audio", seed=0, train=True)


def test_procedural_sources():
    from modalzoo.training.data import ProceduralDataset

    shapes = ProceduralDataset("shapes", "image", num_items=4)
    assert shapes[2]["item"].size == (128, 128)
    audio, rate = ProceduralDataset("tones", "audio", num_items=4)[1]["item"]
    assert rate == 16000 and audio.shape == (16000,)
    with pytest.raises(ValueError, match="unknown procedural"):
        ProceduralDataset("nothing", "image", num_items=1)


def _cad_batches(group: int, position: DataPosition | None = None) -> TrainBatches:
    section = DataSection(source="procedural:cad_sequences", procedural_items=96)
    dataset = load_source(section, "cad", source=section.source, split="train", seed=0)
    transform = build_transform(section, create_processor("cad-tokenizer-tiny"), "cad", seed=0, train=True)
    return TrainBatches(dataset, transform, batch_size=4, rank=0, world_size=1, seed=0, position=position, group_by_length=group)


def _rows(batch: dict[str, torch.Tensor]) -> list[tuple[int, ...]]:
    return [tuple(row[mask].tolist()) for row, mask in zip(batch["cad_tokens"], batch["attention_mask"])]


def test_group_by_length_batches_similar_lengths_from_the_same_items():
    plain, grouped = _cad_batches(1), _cad_batches(8)
    plain_batches = [next(plain) for _ in range(8)]
    grouped_batches = [next(grouped) for _ in range(8)]
    # the same 32 sequences (one group of 8 batches), regrouped by length
    assert sorted(sum(map(_rows, plain_batches), [])) == sorted(sum(map(_rows, grouped_batches), []))
    padding = lambda batches: sum(int((~b["attention_mask"]).sum()) for b in batches)  # noqa: E731
    assert padding(grouped_batches) < padding(plain_batches) / 3
    spans = sorted((int(b["attention_mask"].sum(1).min()), int(b["attention_mask"].sum(1).max())) for b in grouped_batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))  # disjoint length ranges
    assert grouped.position == DataPosition(epoch=0, batches=8)
    # resuming inside a group replays the rest of it, then the next group
    more = [next(grouped) for _ in range(12)]
    assert grouped.position == DataPosition(epoch=0, batches=20)
    resumed = _cad_batches(8, DataPosition(0, 11))
    for expected in more[3:]:
        assert _rows(next(resumed)) == _rows(expected)


def test_group_by_length_needs_items_with_a_length(photo_folder):
    _, dataset, transform = _image_data(photo_folder)
    with pytest.raises(ValueError, match="group_by_length"):
        TrainBatches(dataset, transform, batch_size=2, rank=0, world_size=1, seed=0, group_by_length=2)
