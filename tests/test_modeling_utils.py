import importlib

import pytest
import torch
from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel

import modalzoo
from modalzoo import models
from modalzoo.modeling_utils import ModalTokenizer


def test_variants_are_listed_with_contract_facts():
    rows = {row["name"]: row for row in modalzoo.list_models()}
    assert rows["reference-image-tiny"]["modality"] == "image"
    assert rows["reference-image-tiny"]["max_tokens"] == 64
    assert rows["reference-audio-tiny"]["codebook_sizes"] == [32, 32]
    assert rows["reference-audio-tiny"]["token_rate"] == 250.0
    tiny_families = {row["family"] for row in rows.values() if row["name"].endswith("-tiny")}
    assert tiny_families == {row["family"] for row in rows.values()}, "every family lists a -tiny variant"


def test_every_tiny_variant_builds_and_is_small():
    for row in modalzoo.list_models():
        if row["name"].endswith("-tiny"):
            model = modalzoo.create_model(row["name"])
            assert isinstance(model, ModalTokenizer)
            assert sum(p.numel() for p in model.parameters()) < 300_000, row["name"]
            assert model.codebook_sizes == row["codebook_sizes"]


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(KeyError, match="reference-image-tiny"):
        modalzoo.create_model("reference-image-huge")


def test_registration_is_idempotent():
    importlib.reload(models.reference)
    importlib.reload(models)
    assert modalzoo.create_model("reference-image-tiny").modality == "image"


def test_convs_keep_torch_default_init_not_normal_002():
    model = modalzoo.create_model("reference-image-tiny")
    weight = model.patchify.weight
    bound = 1 / (weight[0].numel() ** 0.5)  # kaiming_uniform(a=sqrt(5)) bound
    assert weight.abs().max() <= bound + 1e-6
    assert weight.std() > 2 * 0.02


def test_check_codes_rejects_out_of_vocabulary_and_bad_shapes():
    model = modalzoo.create_model("reference-image-tiny")
    codes = torch.zeros(1, 1, 64, dtype=torch.long)
    codes[0, 0, 5] = 64
    with pytest.raises(ValueError, match="code 64 at \\[batch 0, codebook 0, position 5\\] is out of vocabulary"):
        model.decode(codes)
    with pytest.raises(ValueError, match="integer"):
        model.decode(torch.zeros(1, 1, 64))
    with pytest.raises(ValueError, match="\\[batch, codebooks, positions\\]"):
        model.decode(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly 64 codes"):
        model.decode(torch.zeros(1, 1, 10, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_image_round_trip_through_save_and_auto_classes(tmp_path, photographs, dtype):
    model = modalzoo.create_model("reference-image-tiny")
    processor = modalzoo.create_processor("reference-image-tiny")
    inputs = processor(photographs)
    codes = model.encode(**inputs).codes
    assert codes.shape == (3, 1, 64) and codes.unique().numel() > 1

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, dtype=dtype)
    loaded_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is type(model) and type(loaded_processor) is type(processor)
    # codebooks stay fp32 whatever the load dtype, so nearest-neighbour search is unchanged
    assert loaded.quantizer.vq._codebook.embed.dtype == torch.float32
    reloaded_inputs = loaded_processor(photographs)
    assert torch.equal(reloaded_inputs["pixel_values"], inputs["pixel_values"])
    reloaded_codes = loaded.encode(reloaded_inputs["pixel_values"].to(dtype)).codes
    if dtype == torch.float32:
        assert torch.equal(reloaded_codes, codes)
    else:
        assert (reloaded_codes == codes).float().mean() > 0.9


def test_audio_round_trip_through_save_and_auto_classes(tmp_path, speech):
    utterances, rate = speech
    model = modalzoo.create_model("reference-audio-tiny")
    extractor = modalzoo.create_processor("reference-audio-tiny")
    inputs = extractor(utterances, sampling_rate=rate)
    encoded = model.encode(**inputs)
    model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    loaded_extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    again = loaded.encode(**loaded_extractor(utterances, sampling_rate=rate))
    assert torch.equal(again.codes, encoded.codes)
    assert torch.equal(again.codes_mask, encoded.codes_mask)


def test_padded_item_encodes_to_its_codes_alone(speech):
    utterances, rate = speech
    model = modalzoo.create_model("reference-audio-tiny")
    extractor = modalzoo.create_processor("reference-audio-tiny")
    batch = model.encode(**extractor(utterances, sampling_rate=rate))
    for index, utterance in enumerate(utterances):
        alone = model.encode(**extractor(utterance, sampling_rate=rate))
        frames = int(batch.codes_mask[index].sum())
        assert frames == alone.codes.shape[-1]
        assert torch.equal(batch.codes[index, :, :frames], alone.codes[0])
    decoded = model.decode(batch.codes, codes_mask=batch.codes_mask)
    lengths = decoded.values_mask.sum(-1)
    assert lengths.tolist() == [int(m.sum()) * 64 for m in batch.codes_mask]
    assert decoded.values[1, 0, int(lengths[1]):].abs().sum() == 0


def test_num_quantizers_selects_the_leading_codebooks():
    model = modalzoo.create_model("reference-audio-tiny")
    audio = torch.randn(1, 1, 640)
    full = model.encode(audio).codes
    one = model.encode(audio, num_quantizers=1).codes
    assert torch.equal(one, full[:, :1])
    with pytest.raises(ValueError, match="num_quantizers must be in \\[1, 2\\]"):
        model.encode(audio, num_quantizers=3)


def test_forward_returns_named_loss_terms(photographs):
    model = modalzoo.create_model("reference-image-tiny").train()
    output = model(**modalzoo.create_processor("reference-image-tiny")(photographs))
    assert set(output.losses) == {"reconstruction", "quantizer"}
    output.loss.backward()
    assert model.patchify.weight.grad is not None


class InitProbeConfig(modalzoo.ModalTokenizerConfig):
    model_type = "init_probe"


class InitProbe(ModalTokenizer):
    config_class = InitProbeConfig

    def __init__(self, config):
        super().__init__(config)
        self.token = torch.nn.Parameter(torch.empty(4))  # owned by the model itself, a container
        self.linear = torch.nn.Linear(2, 2)
        self.post_init()

    def _init_family_weights(self, module):
        from transformers import initialization as init

        if module is self:
            init.constant_(self.token, 3.0)


def test_family_init_reaches_container_modules_and_never_overwrites_loads(tmp_path):
    model = InitProbe(InitProbeConfig())
    assert torch.equal(model.token.detach(), torch.full((4,), 3.0))
    with torch.no_grad():
        model.token.fill_(7.0)
    model.save_pretrained(tmp_path)
    assert torch.equal(InitProbe.from_pretrained(tmp_path).token.detach(), torch.full((4,), 7.0))
