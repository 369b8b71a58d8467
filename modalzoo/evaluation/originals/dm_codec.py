"""`modalzoo bench --compare-original PATH` for DM-Codec: the original `codec.Model` from a
checkout of mubtasimahasan/DM-Codec, with the benchmarked model's weights (the converter's key
map inverted), called as the original's users do: `encode(x, n_q)` -> codes `[n_q, B, T]` and
`decode(codes)`. The original takes no padding mask: a batch whose items fill it is one call, a
batch of different lengths is run item by item on each item's own samples (frames), which is
what modalzoo's masked batches give too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import OriginalImplementation, checkout_on_path


def load_original(checkout: Path, model) -> OriginalImplementation:
    from modalzoo.conversion.dm_codec import to_original_config, to_original_state_dict

    with checkout_on_path(checkout, "codec"):
        from codec import Model

        original = Model(to_original_config(model.config))
    weights = to_original_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, model.config)
    original.load_state_dict(weights, strict=True)
    original = original.eval().to(device=model.device, dtype=model.dtype)
    hop = model.config.hop_length

    @torch.inference_mode()
    def encode(input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, num_quantizers: int | None = None):
        if padding_mask is None or bool(padding_mask.bool().all()):
            return original.encode(input_values, n_q=num_quantizers).transpose(0, 1)
        lengths = padding_mask.long().sum(-1).tolist()
        pieces = [original.encode(input_values[i : i + 1, :, :n], n_q=num_quantizers)[:, 0] for i, n in enumerate(lengths)]
        codes = pieces[0].new_zeros(len(pieces), pieces[0].shape[0], -(-input_values.shape[-1] // hop))
        for index, piece in enumerate(pieces):
            codes[index, :, : piece.shape[-1]] = piece
        return codes

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None):
        if codes_mask is None or bool(codes_mask.bool().all()):
            return original.decode(codes.transpose(0, 1))
        values = torch.zeros(codes.shape[0], 1, codes.shape[-1] * hop, device=codes.device, dtype=model.dtype)
        for index, length in enumerate(codes_mask.long().sum(-1).tolist()):
            values[index, :, : length * hop] = original.decode(codes[index : index + 1, :, :length].transpose(0, 1))[0]
        return values

    return OriginalImplementation(encode, decode)
