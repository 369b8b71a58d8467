"""--compare-original plugin for reference_image against tests/evaluation/fake_original: the
shape every family plugin takes (see modalzoo.evaluation.originals)."""

from modalzoo.evaluation.originals import OriginalImplementation, checkout_on_path

# ours -> original: the family converter's key map, run in reverse
KEY_MAP = {
    "patchify.weight": "encoder.weight",
    "patchify.bias": "encoder.bias",
    "quantizer.vq.project_in.weight": "to_code.weight",
    "quantizer.vq.project_in.bias": "to_code.bias",
    "quantizer.vq.project_out.weight": "from_code.weight",
    "quantizer.vq.project_out.bias": "from_code.bias",
    "unpatchify.weight": "decoder.weight",
    "unpatchify.bias": "decoder.bias",
}


def load_original(checkout, model):
    with checkout_on_path(checkout, "patch_vq"):
        from patch_vq import PatchVQ

    config = model.config
    original = PatchVQ(config.hidden_size, config.patch_size, config.codebook_size, config.codebook_dim, config.image_size)
    ours = model.state_dict()
    state = {theirs: ours[key] for key, theirs in KEY_MAP.items()}
    state["embedding"] = ours["quantizer.vq._codebook.embed"][0]
    original.load_state_dict(state, strict=True)
    original = original.to(device=model.device, dtype=model.dtype).eval()

    def encode(pixel_values):
        return original.encode(pixel_values)[:, None]  # [B, N] -> our [B, 1, N]

    def decode(codes, codes_mask=None):
        return original.decode(codes[:, 0])

    return OriginalImplementation(encode, decode)
