"""MultimodalTokenizer: text + real photographs + real speech -> one id sequence -> back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

import modalzoo
from modalzoo.bridge import MultimodalTokenizer, SpanError, infer_span_kind
from modalzoo.modeling_utils import EncoderOutput

from bridge_helpers import CodesOnlyAudio, CodesOnlyConfig, CodesOnlyImage, train_bpe, train_wordpiece


def reference_codes(bridge, name, items, **kwargs):
    """What the modality tokenizer itself gives for `items`: the ground truth for the bridge."""
    model, processor = bridge.modality_model(name), bridge.modality_processor(name)
    inputs = processor(items, **kwargs)
    with torch.no_grad():
        return model.encode(**inputs)


def test_ids_are_contiguous_blocks_after_the_text_vocabulary(bridge, bpe_tokenizer):
    assert bridge.text_vocab_size == len(bpe_tokenizer) == 400
    assert len(bridge) == 400 + 12 + 4 + 64 + 2 * 32
    image, audio = bridge.modality_entry("image"), bridge.modality_entry("audio")
    assert (image.kind, image.grid, audio.kind) == ("grid", [8, 8], "frames")
    assert image.code_start == 416 and audio.code_start == 480
    assert audio.block.offsets == (480, 512)
    assert bridge.convert_ids_to_tokens([416, 479, 480, 543]) == [
        "<|image_0_0|>", "<|image_0_63|>", "<|audio_0_0|>", "<|audio_1_31|>",
    ]
    assert bridge.is_code_token(torch.tensor([399, 415, 416, 543, 544])).tolist() == [False, False, True, True, False]


def test_text_without_placeholders_is_the_text_tokenizer(bridge, bpe_tokenizer):
    text = "Describe the picture. What does the cat say?"
    assert bridge(text)["input_ids"] == bpe_tokenizer(text)["input_ids"]
    assert bridge.decode(bridge(text)["input_ids"]) == bpe_tokenizer.decode(bpe_tokenizer(text)["input_ids"])


def test_photographs_and_speech_become_one_sequence_and_come_back(bridge, bpe_tokenizer, photographs, speech):
    clips, rate = speech
    texts = ["Describe the picture. <image> Transcribe the recording: <audio>", "<image><image> What does the cat say?"]
    batch = bridge(texts, images=photographs, audio=[clips[0]], sampling_rate=rate, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == batch["attention_mask"].shape

    image_codes = reference_codes(bridge, "image", photographs).codes
    audio_codes = reference_codes(bridge, "audio", [clips[0]], sampling_rate=rate).codes

    first = batch["input_ids"][0].tolist()
    text_ids = bpe_tokenizer("Describe the picture. ", add_special_tokens=False)["input_ids"]
    assert first[: 1 + len(text_ids)] == [bpe_tokenizer.bos_token_id] + text_ids
    assert first[1 + len(text_ids)] == bridge.modality_entry("image").begin_id

    decoded = bridge.decode_modalities(batch["input_ids"])
    assert [span.name for span in decoded[0].spans] == ["image", "audio"]
    assert [span.name for span in decoded[1].spans] == ["image", "image"]
    assert all(not result.errors for result in decoded)
    images = [span.codes for result in decoded for span in result.spans if span.name == "image"]
    for index, codes in enumerate(images):
        assert torch.equal(codes, image_codes[index])
    audio_span = decoded[0].spans[1]
    assert torch.equal(audio_span.codes, audio_codes[0])
    assert audio_span.shape == {"num_frames": audio_codes.shape[-1], "seconds": audio_codes.shape[-1] / 250.0, "num_codebooks": 2}
    assert decoded[0].spans[0].shape == {"grid": (8, 8), "num_codebooks": 1}

    assert all(isinstance(image, Image.Image) and image.size == (32, 32) for image in decoded[1].images)
    (waveform,) = decoded[0].audio
    assert waveform.dtype == np.float32 and waveform.shape == (audio_codes.shape[-1] * 64,)
    assert audio_span.sampling_rate == 16000


def test_items_per_text_flat_or_nested_and_tuples_with_rates(bridge, photographs, speech):
    clips, rate = speech
    texts = ["<image> and <audio>", "<audio> then <image>"]
    flat = bridge(texts, images=photographs[:2], audio=[(clips[0], rate), (clips[1], rate)])
    nested = bridge(texts, images=[[photographs[0]], [photographs[1]]], audio=[[clips[0]], [clips[1]]], sampling_rate=rate)
    assert flat["input_ids"] == nested["input_ids"]
    by_name = bridge(texts, modality_inputs={"image": photographs[:2], "audio": [(clip, rate) for clip in clips]})
    assert by_name["input_ids"] == flat["input_ids"]


def test_padding_sides_and_tensors(bridge, photographs):
    texts = ["<image>", "A longer text before the picture <image>"]
    right = bridge(texts, images=photographs[:2], padding=True, return_tensors="pt")
    left = bridge(texts, images=photographs[:2], padding=True, padding_side="left", return_tensors="pt")
    lengths = right["attention_mask"].sum(-1)
    assert lengths[0] < lengths[1] == right["input_ids"].shape[1]
    assert torch.equal(right["input_ids"][0, : lengths[0]], left["input_ids"][0, -lengths[0] :])
    assert (right["input_ids"][0, lengths[0] :] == bridge.pad_token_id).all()
    assert bridge.encode(texts[1], images=photographs[1:2]) == right["input_ids"][1].tolist()
    single = bridge("<image>", images=photographs[:1], return_tensors="pt")
    assert single["input_ids"].shape == (1, int(lengths[0]))
    assert isinstance(bridge("<image>", images=photographs[:1])["input_ids"][0], int)


def test_bos_eos_or_cls_sep_wrap_the_whole_sequence(photographs):
    wordpiece = train_wordpiece()
    bridge = MultimodalTokenizer.from_tokenizers(wordpiece, ["reference-image-tiny"])
    ids = bridge("Describe <image> the picture", images=photographs[:1])["input_ids"]
    assert ids[0] == wordpiece.cls_token_id and ids[-1] == wordpiece.sep_token_id
    assert ids.count(wordpiece.cls_token_id) == 1
    assert bridge.decode(ids, skip_special_tokens=True) == "describe the picture"
    assert bridge("<image>", images=photographs[:1], add_special_tokens=False)["input_ids"][0] == bridge.modality_entry(
        "image"
    ).begin_id


def test_placeholder_and_item_counts_must_match(bridge, photographs):
    with pytest.raises(ValueError, match="2 placeholders for `images` but 1 items"):
        bridge("<image> <image>", images=photographs[:1])
    with pytest.raises(ValueError, match="1 placeholders for `images` but 2 items"):
        bridge("<image>", images=photographs[:2])
    with pytest.raises(ValueError, match="placeholders for \\['audio'\\] but no such items"):
        bridge("<image> <audio>", images=photographs[:1])
    with pytest.raises(ValueError, match="no such items"):
        bridge("a forgotten <image>")
    with pytest.raises(ValueError, match="no such items"):
        bridge.encode("a forgotten <image>")
    with pytest.raises(ValueError, match="sampling rate"):
        bridge("<audio>", audio=[np.zeros(1600, np.float32)])
    with pytest.raises(ValueError, match="truncating would cut spans"):
        bridge("<image>", images=photographs[:1], truncation=True, max_length=8)


def test_readable_decode(bridge, photographs, speech):
    clips, rate = speech
    ids = bridge("Look: <image> and listen: <audio>!", images=photographs[:1], audio=[(clips[1], rate)])["input_ids"]
    frames = int(reference_codes(bridge, "audio", [clips[1]], sampling_rate=rate).codes.shape[-1])
    text = bridge.decode(ids)
    assert text == f"<s>Look: <image: 8x8 grid> and listen: <audio: {frames} frames x 2 codebooks, {frames / 250:.2f} s>!"
    assert bridge.decode(ids, skip_special_tokens=True) == "Look:  and listen: !"
    raw = bridge.decode(ids, modality_spans="tokens")
    assert raw.startswith("<s>Look: <|image_start|><|num_8|><|num_x|><|num_8|><|num_end|><|image_0_")
    assert bridge(raw, add_special_tokens=False)["input_ids"] == ids  # the raw form re-tokenises exactly
    assert bridge.decode([ids, ids]) == [text, text]


def test_truncated_and_malformed_spans_fail_alone(bridge, photographs, speech):
    clips, rate = speech
    ids = bridge("<image> then <audio>", images=photographs[:1], audio=[(clips[0], rate)], add_special_tokens=False)[
        "input_ids"
    ]
    audio_begin = ids.index(bridge.modality_entry("audio").begin_id)
    image_codes = reference_codes(bridge, "image", photographs[:1]).codes[0]

    truncated = ids[: len(ids) - 5]
    result = bridge.decode_modalities(truncated)
    assert result.spans[0].ok and torch.equal(result.spans[0].codes, image_codes)
    assert len(result.images) == 1 and result.audio == []
    assert "truncated: no end marker" in result.spans[1].error
    assert result.errors == [f"audio span at ids [{result.spans[1].start}, {len(truncated)}): {result.spans[1].error}"]
    assert "<audio: unreadable span: truncated" in bridge.decode(truncated)
    with pytest.raises(SpanError, match="truncated"):
        bridge.decode_modalities(truncated, strict=True)

    header_cut = ids[: audio_begin + 3]
    assert "shape header" in bridge.decode_modalities(header_cut, decode_values=False).spans[1].error

    wrong_codebook = list(ids)
    audio_body = ids.index(bridge.convert_tokens_to_ids("<|num_end|>"), audio_begin) + 1
    wrong_codebook[audio_body], wrong_codebook[audio_body + 1] = wrong_codebook[audio_body + 1], wrong_codebook[audio_body]
    result = bridge.decode_modalities(wrong_codebook)
    assert result.spans[0].ok and "not a code of codebook 0" in result.spans[1].error

    bad_grid = list(ids)
    bad_grid[1] = bridge.convert_tokens_to_ids("<|num_4|>")
    result = bridge.decode_modalities(bad_grid, decode_values=False)
    assert not result.spans[0].ok and result.spans[1].ok

    stray_end = [bridge.modality_entry("audio").end_id] + list(ids)
    result = bridge.decode_modalities(stray_end)
    assert result.spans[0].error == "end marker without a begin marker"
    assert [span.ok for span in result.spans[1:]] == [True, True]


def test_flexible_length_one_d_codes_carry_their_token_count(bpe_tokenizer, photographs):
    bridge = MultimodalTokenizer.from_tokenizers(
        bpe_tokenizer, {"image": "one-d-piece-tiny"}, encode_kwargs={"image": {"num_tokens": 5}}
    )
    assert bridge.modality_entry("image").kind == "sequence"
    ids = bridge("<image> and <image>", images=photographs[:2])["input_ids"]
    assert bridge.decode(ids) == "<s><image: 5 tokens> and <image: 5 tokens>"
    longer = bridge("<image>", images=photographs[:1], encode_kwargs={"image": {"num_tokens": 12}})["input_ids"]
    result = bridge.decode_modalities(longer)
    assert result.shapes == [{"num_tokens": 12, "num_codebooks": 1}]
    assert result.images[0].size == (32, 32)


def test_layout_is_read_from_the_contract():
    grid = CodesOnlyImage(CodesOnlyConfig(sizes=[8], grid=4, length=16))
    assert infer_span_kind(grid) == ("grid", (4, 4))
    assert infer_span_kind(CodesOnlyImage(CodesOnlyConfig(sizes=[8], grid=4, length=12))) == ("sequence", None)
    assert infer_span_kind(CodesOnlyImage(CodesOnlyConfig(sizes=[8], length=32))) == ("sequence", None)
    assert infer_span_kind(CodesOnlyAudio(CodesOnlyConfig(sizes=[8, 8], rate=75.0))) == ("frames", None)
    assert infer_span_kind(modalzoo.create_model("titok-tiny"))[0] == "sequence"


def test_multi_codebook_grids_interleave_per_position(bpe_tokenizer):
    model = CodesOnlyImage(CodesOnlyConfig(sizes=[5, 7, 3], grid=2, length=4))
    bridge = MultimodalTokenizer.from_tokenizers(bpe_tokenizer, {"tri": model}, placeholders={"tri": "<img>"})
    codes = torch.tensor([[[0, 1, 2, 3], [6, 5, 4, 3], [2, 1, 0, 2]]])
    ids = bridge("x <img> y", modality_inputs={"tri": [EncoderOutput(codes=codes)]})["input_ids"]
    offsets = bridge.modality_entry("tri").block.offsets
    span = ids[ids.index(bridge.modality_entry("tri").begin_id) :]
    assert span[5:8] == [offsets[0] + 0, offsets[1] + 6, offsets[2] + 2]  # position 0, all codebooks
    result = bridge.decode_modalities(ids)
    assert result.shapes == [{"grid": (2, 2), "num_codebooks": 3}]
    assert torch.equal(result.spans[0].value, codes[0].float())
    assert bridge.decode(ids) == "<s>x <tri: 2x2 grid x 3 codebooks> y"


def test_continuous_or_clashing_tokenizers_are_refused(bpe_tokenizer):
    with pytest.raises(ValueError, match="continuous"):
        MultimodalTokenizer.from_tokenizers(bpe_tokenizer, {"image": CodesOnlyImage(CodesOnlyConfig(sizes=[]))})
    clashing = train_bpe()
    clashing.add_tokens(["<|image_start|>"], special_tokens=True)
    with pytest.raises(ValueError, match="already has tokens"):
        MultimodalTokenizer.from_tokenizers(clashing, ["reference-image-tiny"])
    with pytest.raises(ValueError, match="named 'image'"):
        MultimodalTokenizer.from_tokenizers(bpe_tokenizer, ["reference-image-tiny", "one-d-piece-tiny"])


def test_save_then_auto_tokenizer_restores_everything(bridge, photographs, speech, tmp_path):
    clips, rate = speech
    text = "Look: <image> and listen: <audio>"
    inputs = {"images": photographs[:1], "audio": [(clips[0], rate)]}
    bridge.save_pretrained(tmp_path)
    assert {"image_tokenizer", "audio_tokenizer", "tokenizer.json", "tokenizer_config.json"} <= {
        path.name for path in tmp_path.iterdir()
    }
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, MultimodalTokenizer) and len(loaded) == len(bridge)
    ids = bridge(text, **inputs)["input_ids"]
    assert loaded(text, **inputs)["input_ids"] == ids
    assert loaded.decode(ids) == bridge.decode(ids)
    original, restored = bridge.decode_modalities(ids), loaded.decode_modalities(ids)
    assert np.array_equal(np.asarray(original.images[0]), np.asarray(restored.images[0]))
    assert np.allclose(original.audio[0], restored.audio[0], atol=1e-6)


def test_saved_config_alone_reads_codes_and_references_by_path(bridge, photographs, tmp_path):
    ids = bridge("<image>", images=photographs[:1])["input_ids"]
    image_model = tmp_path / "image-model"
    bridge.modality_model("image").save_pretrained(image_model)
    by_path = MultimodalTokenizer.from_tokenizers(train_bpe(), {"image": str(image_model)})
    by_path.save_pretrained(tmp_path / "bridge", embed_modalities=False)
    assert not (tmp_path / "bridge" / "image_tokenizer").exists()
    loaded = AutoTokenizer.from_pretrained(tmp_path / "bridge")
    assert loaded.modality_entry("image").source == str(image_model)
    assert loaded.decode_modalities(ids).images[0].size == (32, 32)

    with pytest.raises(ValueError, match="embed_modalities=True"):
        bridge.save_pretrained(tmp_path / "unsaved", embed_modalities=False)

    bridge.save_pretrained(tmp_path / "text-only")
    for subfolder in ("image_tokenizer", "audio_tokenizer"):
        for file in (tmp_path / "text-only" / subfolder).iterdir():
            file.unlink()
    text_only = AutoTokenizer.from_pretrained(tmp_path / "text-only")
    result = text_only.decode_modalities(ids, decode_values=False)
    assert result.shapes == [{"grid": (8, 8), "num_codebooks": 1}] and not result.errors
    assert "decode failed" in text_only.decode_modalities(ids).spans[0].error


def test_llm_embeddings_resize_to_the_bridge(bridge, photographs):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=bridge.text_vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=256,
                        bos_token_id=bridge.bos_token_id, eos_token_id=bridge.eos_token_id)
    llm = GPT2LMHeadModel(config)
    llm.resize_token_embeddings(len(bridge), pad_to_multiple_of=64)
    assert llm.get_input_embeddings().num_embeddings == 576 >= len(bridge)
    batch = bridge("Describe <image>", images=photographs[:1], return_tensors="pt")
    logits = llm(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 576)


def test_pickles_for_data_loader_workers(bpe_tokenizer, photographs, speech):
    import pickle

    clips, rate = speech
    bridge = MultimodalTokenizer.from_tokenizers(bpe_tokenizer, {"image": "reference-image-tiny", "speech": "wavtokenizer-tiny"})
    text, inputs = "<image> says <speech>", {"images": photographs[:1], "audio": [(clips[1][: rate // 2], rate)]}
    copy = pickle.loads(pickle.dumps(bridge))  # wavtokenizer's weight-norm parametrisations need the state dict
    ids = bridge(text, **inputs)["input_ids"]
    assert copy(text, **inputs)["input_ids"] == ids
    assert np.array_equal(copy.decode_modalities(ids).audio[0], bridge.decode_modalities(ids).audio[0])


def test_mapping_benchmark_runs():
    from modalzoo.bridge.benchmark import bench_bridge_mapping

    result = bench_bridge_mapping(num_codes=4000, repeats=1)
    assert result["num_codes"] == 4000 and result["round_trip_s"] > 0


def test_bridge_in_a_subfolder_next_to_an_llm(bridge, photographs, tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    bridge.save_pretrained(tmp_path / "bridge")
    loaded = AutoTokenizer.from_pretrained(tmp_path, subfolder="bridge")
    assert isinstance(loaded, MultimodalTokenizer)
    ids = bridge("<image>", images=photographs[:1])["input_ids"]
    assert loaded.decode_modalities(ids).images[0].size == (32, 32)  # weights from bridge/image_tokenizer
    bridge.save_pretrained(tmp_path)  # beside qwen2's config.json AutoTokenizer picks Qwen2Tokenizer ...
    assert isinstance(MultimodalTokenizer.from_pretrained(tmp_path), MultimodalTokenizer)  # ... this never does
