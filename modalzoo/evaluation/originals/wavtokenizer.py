"""`modalzoo bench --compare-original PATH` for WavTokenizer (jishengpeng/WavTokenizer): the
original `EncodecFeatures` + `VocosBackbone` + `ISTFTHead` from a checkout, holding the
benchmarked model's weights (the converter's key map applied backwards, key by key).

The original has no padding masks, so, as its inference scripts do, it runs one item at a
time: `encode_infer` then `codes_to_features` + `decode`, with `bandwidth_id` 0. It needs
torch, torchaudio, einops, scipy and pyyaml; `decoder/experiment.py` is never imported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import OriginalImplementation, checkout_on_path


def original_state_dict(original: torch.nn.Module, model) -> dict[str, torch.Tensor]:
    """The original's state dict filled with the model's tensors; the parts the converter drops
    (unused SEANet decoder, recomputed window) keep what the original built."""
    from modalzoo.conversion.wavtokenizer import _map_key

    ours = model.state_dict()
    filled = {}
    for key, value in original.state_dict().items():
        our_key = _map_key(key)
        if our_key is None:
            filled[key] = value
        elif our_key not in ours or tuple(ours[our_key].shape) != tuple(value.shape):
            raise ValueError(f"the original's {key} has no counterpart of shape {tuple(value.shape)} in the model")
        else:
            filled[key] = ours[our_key]
        if key.endswith("inited"):
            # Released checkpoints are initialised; a random-init model's flag is 0, and the
            # original would then re-run k-means (4096 x 200 iterations) inside every encode.
            filled[key] = torch.ones_like(value)
    return filled


def load_original(checkout: Path, model) -> OriginalImplementation:
    config = model.config
    with checkout_on_path(checkout, "decoder", "encoder"):
        from decoder.feature_extractors import EncodecFeatures
        from decoder.heads import ISTFTHead
        from decoder.models import VocosBackbone
        from decoder.pretrained import WavTokenizer

        if config.encoder_num_filters != 32 or config.hidden_size != 512:
            raise ValueError("the original hard-codes 32 encoder filters and 512 channels: compare a released variant")
        original = WavTokenizer(
            EncodecFeatures(
                encodec_model="encodec_24khz",
                bandwidths=[6.6] * 4,
                train_codebooks=True,
                num_quantizers=1,
                dowmsamples=list(config.downsampling_ratios),
                vq_bins=config.codebook_size,
                vq_kmeans=config.codebook_kmeans_iters,
            ),
            VocosBackbone(
                input_channels=config.hidden_size,
                dim=config.decoder_dim,
                intermediate_dim=config.decoder_intermediate_dim,
                num_layers=config.decoder_num_layers,
                adanorm_num_embeddings=config.adanorm_num_embeddings,
            ),
            ISTFTHead(dim=config.decoder_dim, n_fft=config.n_fft, hop_length=config.hop_length, padding="same"),
        )
    original.load_state_dict(original_state_dict(original, model), strict=True)
    original = original.to(device=model.device, dtype=model.dtype).eval()
    bandwidth_id = torch.tensor([0], device=model.device)

    @torch.inference_mode()
    def encode(input_values: torch.Tensor, padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        codes = []
        for index in range(input_values.shape[0]):
            length = input_values.shape[-1] if padding_mask is None else int(padding_mask[index].sum())
            _, item_codes = original.encode_infer(input_values[index, :, :length], bandwidth_id=bandwidth_id)
            codes.append(item_codes[0])  # [1, frames]
        return torch.stack(codes) if len({c.shape[-1] for c in codes}) == 1 else codes

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> torch.Tensor:
        audio = []
        for index in range(codes.shape[0]):
            frames = codes.shape[-1] if codes_mask is None else int(codes_mask[index].sum())
            features = original.codes_to_features(codes[index, :, :frames])
            audio.append(original.decode(features, bandwidth_id=bandwidth_id))
        return torch.stack(audio) if len({a.shape[-1] for a in audio}) == 1 else audio

    return OriginalImplementation(encode, decode)
