"""CAD-Tokenizer: tokens, grammar automaton, primitive pooling, losses, save/load, the trainer,
LLM binding, the bridge's id blocks, and the shipped small model on held-out sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo
from modalzoo.data.cad import CADValidationError, cad_sequences_heldout, write_cadfusion, write_deepcad
from modalzoo.models.cad_tokenizer import CADTokenizerModel, CodeTokenBinding
from modalzoo.models.cad_tokenizer.grammar import CIRCLE, EOS, LINE, LOOP_END, VALUE_BASE, Grammar, State
from modalzoo.models.cad_tokenizer.modeling_cad_tokenizer import squared_emd
from modalzoo.models.cad_tokenizer.primitives import primitive_ids, primitive_ids_and_offsets
from modalzoo.models.cad_tokenizer.processing_cad_tokenizer import sequence_to_tokens, tokens_to_sequence

SHIPPED = Path(modalzoo.__file__).parent / "pretrained" / "cad_tokenizer_small"


@pytest.fixture(scope="module")
def sequences():
    return [cad_sequences_heldout(index) for index in range(12)]


def tiny(**overrides):
    torch.manual_seed(0)
    return modalzoo.create_model("cad-tokenizer-tiny", **overrides), modalzoo.create_processor("cad-tokenizer-tiny")


def test_processor_reads_every_format_and_round_trips_tokens(sequences):
    processor = modalzoo.create_processor("cad-tokenizer-tiny")
    batch = processor(sequences)
    assert batch["cad_tokens"].shape[0] == 12 and torch.equal(batch["attention_mask"], batch["cad_tokens"] != 0)
    assert (batch["cad_tokens"].gather(1, batch["attention_mask"].sum(1, keepdim=True) - 1) == EOS).all()
    for row, sequence in zip(batch["cad_tokens"], sequences):
        assert tokens_to_sequence(row.tolist(), 6) == sequence
    from_text = processor([write_cadfusion(s) for s in sequences])["cad_tokens"]
    from_vectors = processor([write_deepcad(s) for s in sequences])["cad_tokens"]
    assert torch.equal(from_text, batch["cad_tokens"]) and torch.equal(from_vectors, batch["cad_tokens"])
    assert processor.postprocess(batch["cad_tokens"], batch["attention_mask"]) == sequences
    with pytest.raises(ValueError, match="expected a CADSequence, a CADFusion string or a DeepCAD vector"):
        processor([3.5])
    with pytest.raises(CADValidationError, match="zero-length line"):
        processor("line,3,4 <curve_end> line,3,4 <curve_end> <loop_end> <face_end> <sketch_end> "
                  "add,47,32,32,32,32,1,0,0,0,1,0,0,0,1,45,31,31 <extrude_end>")
    with pytest.raises(CADValidationError, match="token 1: token id 6 breaks the CAD grammar"):
        tokens_to_sequence([LINE, LOOP_END], 6)


def test_grammar_automaton_accepts_sequences_and_masks_everything_else(sequences):
    grammar = Grammar(6)
    for sequence in sequences:
        tokens = sequence_to_tokens(sequence)
        assert grammar.accepts(tokens)
        assert not grammar.accepts(tokens[:-1])  # no EOS
        assert not grammar.accepts(tokens[:1] + [LOOP_END] + tokens[1:])  # LOOP_END inside a line
        state, length = State(), 0
        for token in tokens:  # every true next token is allowed, and the mask matches `step`
            mask = grammar.mask(state, length, 256)
            assert mask[token]
            probe = [t for t in range(grammar.vocab_size) if t < VALUE_BASE or t == VALUE_BASE + 5]
            assert [bool(mask[t]) for t in probe] == [grammar.step(state, t) is not None for t in probe]
            state, length = grammar.step(state, token), length + 1
    # a circle stands alone, a single line cannot close its loop
    after_circle = grammar.step(grammar.step(State(), 5), VALUE_BASE)
    for _ in range(7):
        after_circle = grammar.step(after_circle, VALUE_BASE)
    assert grammar.step(after_circle, LINE) is None and grammar.step(after_circle, LOOP_END) is not None
    one_line = grammar.step(grammar.step(grammar.step(State(), LINE), VALUE_BASE), VALUE_BASE)
    assert grammar.step(one_line, LOOP_END) is None


def test_constrained_decoding_always_parses_even_at_random_init(sequences):
    model, processor = tiny()
    encoded = model.encode(**processor(sequences[:4]))
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask, max_length=60)
    assert decoded.values.shape[1] <= 60
    parsed = processor.postprocess(decoded.values, decoded.values_mask)
    assert all(sequence is not None and sequence.pairs for sequence in parsed)
    free = model.decode(encoded.codes, codes_mask=encoded.codes_mask, max_length=60, constrained=False)
    assert any(sequence is None for sequence in processor.postprocess(free.values, free.values_mask))


def test_one_code_per_primitive_and_padding_does_not_change_codes(sequences):
    model, processor = tiny()
    batch = processor(sequences)
    encoded = model.encode(**batch)
    curves = torch.tensor([len(s.curves) for s in sequences])
    pairs = torch.tensor([len(s.pairs) for s in sequences])
    assert encoded.codes.shape[:2] == (12, 1)
    assert torch.equal(encoded.codes_mask.sum(1), curves + 4 * pairs)  # four extrude parameter groups
    for pooling, expected in (("loop", None), ("single", pairs)):
        pooled, _ = tiny(pooling=pooling)
        count = pooled.num_codes(**batch)
        if expected is None:
            loops = torch.tensor([sum(len(f.loops) for sk, _ in s.pairs for f in sk.faces) for s in sequences])
            expected = loops + 4 * pairs
        assert torch.equal(count, expected)
    assert torch.equal(tiny(extrude_pooling="extrusion")[0].num_codes(**batch), curves + pairs)
    circles = torch.tensor([sum(c.kind == "circle" for _, c in s.curves) for s in sequences])
    assert circles.sum() > 0
    assert torch.equal(tiny(split_circles=True)[0].num_codes(**batch), curves + circles + 4 * pairs)
    for index in (0, 5):
        alone = model.encode(**processor(sequences[index]))
        count = int(encoded.codes_mask[index].sum())
        assert torch.equal(alone.codes[0, 0], encoded.codes[index, 0, :count])


def test_a_split_circle_starts_its_second_code_at_the_right_point():
    circle = [CIRCLE] + [VALUE_BASE + v for v in (10, 20, 30, 20, 20, 30, 20, 10)] + [LOOP_END]
    line = [LINE, VALUE_BASE + 1, VALUE_BASE + 2]
    tokens = torch.tensor([line + circle + line])
    ids = primitive_ids(tokens, None, "curve", "parameter_groups", split_circles=True)[0].tolist()
    assert ids == [0] * 3 + [1] * 3 + [2] * 7 + [3] * 3
    assert primitive_ids(tokens, None, "curve", "parameter_groups")[0].tolist() == [0] * 3 + [1] * 10 + [2] * 3
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, -1] = False
    _, offsets = primitive_ids_and_offsets(tokens, mask, "curve", "parameter_groups", split_circles=True)
    assert offsets[0].tolist() == [0, 1, 2] + [0, 1, 2] + list(range(7)) + [0, 1, 0]  # the last token is masked


def test_offset_embedding_gives_each_position_in_a_primitive_its_own_input(sequences):
    model, processor = tiny(offset_embedding=True, split_circles=True)
    batch = processor(sequences[:4])
    plain = model(**batch).values
    with torch.no_grad():
        model.offset_embedding.weight.zero_()
    assert not torch.allclose(model(**batch).values, plain)
    encoded = model.encode(**batch)
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask, max_length=60)
    assert all(sequence is not None for sequence in processor.postprocess(decoded.values, decoded.values_mask))


def test_squared_emd_grows_with_the_distance_between_bins():
    targets = torch.tensor([VALUE_BASE + 10] * 3)
    logits = torch.full((3, 80), -1e4)
    for row, predicted in enumerate((10, 11, 13)):
        logits[row, VALUE_BASE + predicted] = 0.0
    per_row = [float(squared_emd(logits[i : i + 1], targets[i : i + 1], [(VALUE_BASE, 80)])) for i in range(3)]
    assert per_row == pytest.approx([0.0, 1.0, 3.0], abs=1e-4)  # one-hot CDFs differ on |d| bins


def test_forward_returns_the_named_loss_terms_and_trains(sequences):
    model, processor = tiny()
    model.train()
    batch = processor(sequences[:6])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        output = model(**batch)
        assert set(output.losses) == {"emd", "cross_entropy", "codebook", "commitment"}
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        first = first if first is not None else {k: float(v.detach()) for k, v in output.losses.items()}
    assert float(output.losses["cross_entropy"]) < 0.75 * first["cross_entropy"]
    assert float(output.losses["emd"]) < first["emd"]
    assert model.encoder.layers[0].linear1.weight.grad is not None and model.to_code.weight.grad is not None


def test_save_and_auto_classes_round_trip(tmp_path, sequences):
    model, processor = tiny()
    inputs = processor(sequences[:3])
    codes = model.encode(**inputs)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = AutoModel.from_pretrained(tmp_path), AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, CADTokenizerModel) and type(loaded_processor) is type(processor)
    again = loaded.encode(**loaded_processor(sequences[:3]))
    assert torch.equal(again.codes, codes.codes) and torch.equal(again.codes_mask, codes.codes_mask)
    with pytest.raises(ValueError, match="out of vocabulary"):
        loaded.decode(torch.full((1, 1, 3), 256))


def test_tiny_recipe_trains_through_the_shared_trainer(tmp_path):
    from modalzoo.cli import main
    from modalzoo.training.reporting import read_metrics

    output = tmp_path / "run"
    code = main(["train", "cad_tokenizer_tiny", "steps=3", "data.batch_size=4", "data.eval_items=2", "log_every=1",
                 "num_samples=2", "log_with=[csv]", f"output_dir={output}"])  # fmt: skip
    assert code == 0
    metrics = read_metrics(output)
    assert len(metrics["train/emd"]) == 3 and "eval/parameter_accuracy" in metrics and "eval/invalid_ratio" in metrics
    assert "reference:" in (output / "samples" / "step-00000003" / "0.txt").read_text()
    assert AutoModel.from_pretrained(output / "final").config.codebook_size == 256


def test_llm_binding_round_trips_codes_through_existing_token_ids():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model, _ = tiny(codebook_size=48)
    text_model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=64, n_layer=1, n_head=2)).eval()
    allowed = torch.arange(10, 300)  # leave the first ids (special tokens) unbound
    binding = CodeTokenBinding.from_models(model, text_model, allowed_ids=allowed)
    embedding_before = text_model.get_input_embeddings().weight.clone()
    history = binding.fit(steps=400, lr=1e-2)
    assert history[-1] < 0.1 * history[0]
    assert torch.equal(text_model.get_input_embeddings().weight, embedding_before)  # the text model stays frozen
    codes = torch.arange(48)
    ids = binding.codes_to_ids(codes)
    assert ids.unique().numel() == 48 and bool(((ids >= 10) & (ids < 300)).all())
    assert torch.equal(binding.ids_to_codes(ids), codes)


def test_bridge_id_block_mode_round_trips_codes(sequences):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import TokenizersBackend

    from modalzoo.bridge import MultimodalTokenizer

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(["a bracket with two holes", "extrude the sketch"], trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>", "<s>"]))
    text = TokenizersBackend(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>")
    model, processor = tiny()
    bridge = MultimodalTokenizer.from_tokenizers(text, {"cad": model})
    encoded = model.encode(**processor(sequences[:2]))
    spans = bridge.encode_codes("cad", encoded.codes, encoded.codes_mask)
    for index, span in enumerate(spans):
        decoded = bridge.decode_modalities(span, decode_values=False)
        count = int(encoded.codes_mask[index].sum())
        assert torch.equal(torch.as_tensor(decoded.spans[0].codes).flatten(), encoded.codes[index, 0, :count])


def test_shipped_small_model_reconstructs_held_out_sequences():
    """The first 16 held-out sequences (cad_sequences_heldout 0-15), built with the kernel.
    Measured for the shipped model (7,472 CPU steps, 26.3 min): parameter accuracy 0.956, sketch
    F1 1.0, extrusion F1 1.0, build invalid ratio 0, Chamfer 0.0021. Regression floors just under
    the measurement (one item may flip on another CPU); the 200-item figures are in the card."""
    from modalzoo.evaluation.cad_metrics import CADMetrics

    model = AutoModel.from_pretrained(SHIPPED).eval()
    processor = AutoFeatureExtractor.from_pretrained(SHIPPED)
    references = [cad_sequences_heldout(index) for index in range(16)]
    encoded = model.encode(**processor(references))
    decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    meter = CADMetrics(kernel=True)
    for reference, sequence in zip(references, processor.postprocess(decoded.values, decoded.values_mask)):
        assert sequence is not None  # constrained decoding always parses
        meter.update(reference, sequence)
    scores = meter.compute()
    assert scores["parameter_accuracy"] >= 0.93 and scores["sketch_f1"] >= 0.96, scores
    assert scores["extrusion_f1"] >= 0.96 and scores["build_invalid_ratio"] <= 0.07 and scores["chamfer"] < 0.005, scores
