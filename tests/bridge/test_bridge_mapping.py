"""Code <-> id arithmetic: property-based round trips over random shapes, codebooks and offsets."""

from __future__ import annotations

import math

import pytest
import torch
from bridge_helpers import CodesOnlyAudio, CodesOnlyConfig, CodesOnlyImage, word_level
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modalzoo.bridge import CodeBlockLayout, MultimodalTokenizer, NumberTokens, SpanError, SpanLayout, locate_spans
from modalzoo.modeling_utils import EncoderOutput

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

codebook_sizes = st.lists(st.integers(1, 70_000), min_size=1, max_size=5)
offsets = st.integers(0, 2**40)


def random_codes(sizes, shape, seed) -> torch.Tensor:
    """Codes `[*shape[:-1], Q, T]` drawn uniformly from each codebook."""
    generator = torch.Generator().manual_seed(seed)
    *lead, positions = shape
    columns = [torch.randint(0, size, (*lead, 1, positions), generator=generator) for size in sizes]
    return torch.cat(columns, dim=-2)


@PROPERTY
@given(sizes=codebook_sizes, start=offsets, lead=st.lists(st.integers(1, 3), max_size=2),
       positions=st.integers(0, 40), seed=st.integers(0, 2**31), data=st.data())
def test_ids_to_codes_to_ids_is_the_identity(sizes, start, lead, positions, seed, data):
    layout = CodeBlockLayout(tuple(sizes), start)
    used = data.draw(st.integers(1, len(sizes)), label="codebooks used")
    # random valid ids: slot j of a position belongs to codebook j
    codes = random_codes(sizes[:used], (*lead, positions), seed)
    ids = codes + torch.tensor(layout.offsets[:used]).view(-1, 1)
    ids = ids.transpose(-1, -2).reshape(*lead, -1)
    back = layout.ids_to_codes(ids, used)
    assert back.shape == (*lead, used, positions)
    assert torch.equal(layout.codes_to_ids(back), ids)
    assert torch.equal(back, codes)
    assert bool(layout.contains(ids).all())


@PROPERTY
@given(sizes=codebook_sizes, start=offsets, positions=st.integers(1, 30), seed=st.integers(0, 2**31), data=st.data())
def test_foreign_ids_are_rejected_with_their_position(sizes, start, positions, seed, data):
    layout = CodeBlockLayout(tuple(sizes), start)
    ids = layout.codes_to_ids(random_codes(sizes, (positions,), seed))
    slot = data.draw(st.integers(0, ids.numel() - 1), label="slot")
    codebook = slot % len(sizes)
    low, high = layout.offsets[codebook], layout.offsets[codebook] + sizes[codebook]
    bad = data.draw(st.one_of(st.integers(-5, low - 1), st.integers(high, high + 10**6)), label="foreign id")
    ids[slot] = bad
    with pytest.raises(SpanError, match=f"at code position {slot} is not a code of codebook {codebook}"):
        layout.ids_to_codes(ids, len(sizes))


def test_out_of_range_codes_and_wrong_dtypes_are_rejected():
    layout = CodeBlockLayout((4, 6), 100)
    with pytest.raises(SpanError, match="code 4 at index \\(0, 2\\) is out of range for codebook 0"):
        layout.codes_to_ids(torch.tensor([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(SpanError, match="integers"):
        layout.codes_to_ids(torch.zeros(2, 3))
    with pytest.raises(SpanError, match="1 to 2 codebooks"):
        layout.codes_to_ids(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="continuous"):
        CodeBlockLayout((), 0)


NUMBERS = NumberTokens(tuple(range(1000, 1010)), 1010, 1011)


@PROPERTY
@given(numbers=st.lists(st.integers(0, 10**12 - 1), min_size=1, max_size=3))
def test_shape_headers_round_trip(numbers):
    ids = NUMBERS.encode(numbers)
    assert NUMBERS.parse(ids + [7, 8], len(numbers)) == (tuple(numbers), len(ids))
    for cut in range(len(ids)):
        with pytest.raises(SpanError):
            NUMBERS.parse(ids[:cut], len(numbers))


spans_setup = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["grid", "sequence", "frames"]),
        "sizes": st.lists(st.integers(1, 5000), min_size=1, max_size=4),
        "start": st.integers(2000, 2**35),
        "dims": st.lists(st.integers(1, 12), min_size=2, max_size=2),
        "seed": st.integers(0, 2**31),
    }
)


@PROPERTY
@given(setup=spans_setup, data=st.data())
def test_span_ids_parse_back_and_any_truncation_is_an_error(setup, data):
    block = CodeBlockLayout(tuple(setup["sizes"]), setup["start"])
    layout = SpanLayout(setup["kind"], 1500, 1501, block, NUMBERS)
    dims = tuple(setup["dims"]) if setup["kind"] == "grid" else (setup["dims"][0] * setup["dims"][1],)
    used = data.draw(st.integers(1, len(setup["sizes"])), label="codebooks used")
    codes = random_codes(setup["sizes"][:used], (math.prod(dims),), setup["seed"])
    ids = layout.span_ids(codes, dims if setup["kind"] == "grid" else None)
    parsed = layout.parse(ids)
    assert parsed.dims == dims and torch.equal(parsed.codes, codes)
    cut = data.draw(st.integers(1, ids.numel() - 1), label="cut")
    with pytest.raises(SpanError):
        layout.parse(ids[:cut])


@PROPERTY
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5), which=st.lists(st.integers(0, 1), min_size=5, max_size=5))
def test_spans_are_located_between_text(lengths, which):
    begins, ends = [9000, 9002], [9001, 9003]
    sequence, expected = [], []
    for index, text_length in enumerate(lengths):
        sequence += list(range(text_length))  # text ids never collide with markers
        layout = which[index]
        start = len(sequence)
        sequence += [begins[layout], 5, 6, ends[layout]]
        expected.append((layout, start, len(sequence), True))
    found = [(span.layout, span.start, span.stop, span.complete) for span in locate_spans(sequence, begins, ends)]
    assert found == expected


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text_vocab=st.integers(5, 3000),
    image_sizes=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    audio_sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    grid=st.integers(1, 4),
    frames=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    seed=st.integers(0, 2**31),
)
def test_bridge_ids_to_codes_to_ids_is_the_identity(text_vocab, image_sizes, audio_sizes, grid, frames, seed):
    """Through a whole MultimodalTokenizer whose text vocabulary (so every id offset) is random."""
    image = CodesOnlyImage(CodesOnlyConfig(sizes=image_sizes, grid=grid, length=grid * grid))
    audio = CodesOnlyAudio(CodesOnlyConfig(sizes=audio_sizes, rate=50.0))
    bridge = MultimodalTokenizer.from_tokenizers(word_level(text_vocab), {"image": image, "audio": audio})
    assert bridge.modality_entry("image").code_start == text_vocab + 16
    images = [EncoderOutput(codes=random_codes(image_sizes, (1, grid * grid), seed))]
    # a padded audio batch: every item keeps only its own frames
    longest = max(frames)
    audio_codes = random_codes(audio_sizes, (len(frames), longest), seed + 1)
    mask = torch.arange(longest)[None] < torch.tensor(frames)[:, None]
    clips = [EncoderOutput(codes=audio_codes[index : index + 1], codes_mask=mask[index : index + 1]) for index in range(len(frames))]
    text = "w1 <image> w2 " + " w3 ".join("<audio>" for _ in frames)
    ids = bridge(text, images=images, audio=clips)["input_ids"]

    result = bridge.decode_modalities(ids, decode_values=False)
    assert not result.errors
    assert torch.equal(result.spans[0].codes, images[0].codes[0])
    for index, span in enumerate(result.spans[1:]):
        assert torch.equal(span.codes, audio_codes[index][:, : frames[index]])
        assert span.shape["num_frames"] == frames[index]
    # ids -> codes -> ids: re-encoding the decoded codes gives back every span exactly
    for span in result.spans:
        assert bridge.encode_codes(span.name, span.codes[None])[0].tolist() == ids[span.start : span.stop]
