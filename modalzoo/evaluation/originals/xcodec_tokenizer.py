"""`modalzoo bench --compare-original PATH` for X-Codec: plain transformers `XcodecModel` with the
benchmarked model's weights (`model.to_transformers()`), used as a transformers user would.

X-Codec's reference implementation for this comparison is the one transformers ships, so the
checkout is not read (pass any folder, e.g. `--compare-original .`). `XcodecModel` takes no
padding mask: a batch whose items fill it is encoded in one call, a batch of different lengths
item by item (each trimmed to its own whole frames), which is what transformers users write
today and what modalzoo's masked batches replace. Decode follows the same rule with
`codes_mask`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import OriginalImplementation


def load_original(checkout: Path, model) -> OriginalImplementation:
    plain = model.to_transformers().to(device=model.device, dtype=model.dtype).eval()
    hop = model.config.hop_length

    @torch.inference_mode()
    def encode(input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, **options) -> torch.Tensor:
        if padding_mask is None or bool(padding_mask.bool().all()):
            return plain.encode(input_values, **options).audio_codes
        frames = (padding_mask.long().sum(-1) + hop - 1) // hop
        pieces = [plain.encode(input_values[i : i + 1, :, : int(n) * hop], **options).audio_codes for i, n in enumerate(frames)]
        codes = pieces[0].new_zeros(len(pieces), pieces[0].shape[1], int(frames.max()))
        for index, piece in enumerate(pieces):
            codes[index, :, : piece.shape[-1]] = piece[0]
        return codes

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> torch.Tensor:
        if codes_mask is None or bool(codes_mask.bool().all()):
            return plain.decode(codes).audio_values
        lengths = codes_mask.long().sum(-1).tolist()
        values = torch.zeros(codes.shape[0], 1, codes.shape[-1] * hop, device=codes.device, dtype=plain.dtype)
        for index, length in enumerate(lengths):
            values[index, :, : length * hop] = plain.decode(codes[index : index + 1, :, :length]).audio_values[0]
        return values

    return OriginalImplementation(encode, decode)
