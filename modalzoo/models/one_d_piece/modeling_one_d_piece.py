"""One-D-Piece on the modalzoo contract: TiTok's modules, plus quality control by token count.

* `encode(pixel_values, num_tokens=k)` keeps the first k codes; `decode(codes[..., :k])` renders
  from any 1 <= k <= 256 tokens (the decoder reads only the tokens it is given, with their own
  position embeddings: no padding, no mask tokens for the dropped tail, as in the original).
* `decode(codes, codes_mask=mask)` decodes a batch whose images keep different prefixes.
* In training mode, `forward` applies Tail Token Drop as the original does: one length
  n ~ U{1..K} per batch (drawn from `generator`, or the global generator like the original's
  `torch.randint`), and the decoder sees only the first n quantized tokens.
"""

from __future__ import annotations

import torch

from ..titok.modeling_titok import TiTokTokenizer
from .configuration_one_d_piece import OneDPieceConfig


class OneDPieceTokenizer(TiTokTokenizer):
    config_class = OneDPieceConfig
    supports_variable_length = True

    def _training_length(self, generator: torch.Generator | None) -> int:
        # Tail Token Drop: one draw per batch on the CPU generator, as the original's randint.
        return int(torch.randint(1, self.config.num_latent_tokens + 1, (1,), generator=generator))
