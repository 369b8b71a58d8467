"""The encode/decode contract every modalzoo family honours.

`ModalTokenizer` is a `PreTrainedModel` that turns an item of one modality into discrete codes
`[B, Q, T]` (Q codebooks / scales / streams, T positions) and back. It also handles, once for
every family, the transformers 5.x loading pitfalls:

* the default `_init_weights` re-initialises every conv and linear with N(0, 0.02); here each
  module keeps (or, when a key is missing, gets) its own PyTorch default initialisation;
* non-persistent buffers (windows, filterbanks, FSQ bases) are left as uninitialised memory by
  the meta-device loader; modules that own such buffers implement `ComputedBuffers` and are
  rebuilt in `_init_weights`;
* codebooks are listed in `_keep_in_fp32_modules` so a bf16 load keeps nearest-neighbour search
  exact.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

MODALITIES = ("image", "audio", "speech", "3d", "cad")


@dataclass
class EncoderOutput(ModelOutput):
    """What `encode` returns.

    codes: LongTensor `[B, Q, T]`, or None for continuous variants (then `latents` is set).
    codes_mask: bool `[B, T]`, True on real positions; None when every item has the same length.
    latents: continuous features a family exposes (VAE means, semantic features).
    """

    codes: torch.LongTensor | None = None
    codes_mask: torch.BoolTensor | None = None
    latents: torch.FloatTensor | None = None


@dataclass
class DecoderOutput(ModelOutput):
    """What `decode` returns: `values` in the model's raw space (pixels, waveform, ...).

    values_mask: bool mask over the last axis of `values` when items have different lengths.
    """

    values: torch.FloatTensor | None = None
    values_mask: torch.BoolTensor | None = None


@dataclass
class TokenizerOutput(ModelOutput):
    """What `forward` returns for training: the weighted total and every loss term by name."""

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    codes: torch.LongTensor | None = None
    values: torch.FloatTensor | None = None


class ComputedBuffers:
    """Mixin for modules whose non-persistent buffers are derived from the config.

    `from_pretrained` builds models on the meta device and never loads non-persistent buffers, so
    they would hold garbage; `ModalTokenizer.initialize_weights` calls `computed_buffers()` and
    copies the fresh values in.
    """

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        """Fresh values keyed by buffer name relative to this module (dotted for submodules)."""
        raise NotImplementedError


class ModalTokenizerConfig(PreTrainedConfig):
    """Base configuration. The contract facts live here so that `list_models()` can report
    them without building a model; `variant` records the registered name a config came from."""

    model_type = "modal_tokenizer"
    variant: str | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        """One size per codebook / scale / stream (the Q axis of `codes`)."""
        raise NotImplementedError

    @property
    def token_rate(self) -> float | None:
        """Codes per second along T (audio families); None for the others."""
        return None

    @property
    def max_tokens(self) -> int | None:
        """Positions T per item for fixed-size modalities; None for streams."""
        return None


class ModalTokenizer(PreTrainedModel):
    """Base class of every tokenizer family. Subclasses set `modality` and implement `encode`,
    `decode` and `forward`; the contract facts come from the config."""

    config_class = ModalTokenizerConfig
    base_model_prefix = "tokenizer"
    modality: str = ""
    # Parameter name fragments that must stay fp32 under bf16/fp16 loads.
    _keep_in_fp32_modules_strict = ["codebook"]
    _supports_sdpa = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.modality and cls.modality not in MODALITIES:
            raise TypeError(f"{cls.__name__}.modality must be one of {MODALITIES}, got {cls.modality!r}")

    # ----- contract facts -------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.config.codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def token_rate(self) -> float | None:
        return self.config.token_rate

    @property
    def max_tokens(self) -> int | None:
        return self.config.max_tokens

    # ----- the contract -----------------------------------------------------------------------
    def encode(self, *args, **kwargs) -> EncoderOutput:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None, **kwargs) -> DecoderOutput:
        raise NotImplementedError

    def check_codes(self, codes: torch.Tensor, *, min_positions: int = 1) -> torch.LongTensor:
        """Validates `codes` against this model's codebooks before a decode."""
        if not torch.is_tensor(codes):
            codes = torch.as_tensor(codes)
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        if codes.ndim != 3:
            raise ValueError(f"codes must have shape [batch, codebooks, positions], got {tuple(codes.shape)}")
        if codes.shape[1] > self.num_codebooks:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this model has {self.num_codebooks}")
        if codes.shape[2] < min_positions:
            raise ValueError(f"codes need at least {min_positions} positions, got {codes.shape[2]}")
        sizes = torch.tensor(self.codebook_sizes[: codes.shape[1]], device=codes.device).view(1, -1, 1)
        bad = (codes < 0) | (codes >= sizes)
        if bad.any():
            b, q, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"code {int(codes[b, q, t])} at [batch {b}, codebook {q}, position {t}] is out of vocabulary "
                f"(codebook {q} has {self.codebook_sizes[q]} entries)"
            )
        return codes.long()

    # ----- Hub ---------------------------------------------------------------------------------------
    def push_to_hub(self, repo_id: str, **kwargs):
        """Pushes weights, the default processor and the family's model card in one commit
        (`modalzoo.hub.push_model`, which takes the same keywords as transformers' push_to_hub
        plus `metrics`, `with_code` and `processor`)."""
        try:
            hub = importlib.import_module("modalzoo.hub")
        except ImportError:  # code exported with a repo (trust_remote_code) and modalzoo absent
            return super().push_to_hub(repo_id, **kwargs)
        return hub.push_model(self, repo_id, **kwargs)

    # ----- transformers 5.x initialisation ------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Runs for fresh models and, under from_pretrained, only for modules with missing keys;
        # torch's init functions are guarded by the `_is_hf_initialized` flag at that point, so
        # loaded tensors are never overwritten.
        if isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif hasattr(module, "reset_parameters") and not isinstance(module, PreTrainedModel):
            module.reset_parameters()
        self._init_family_weights(module)

    def _init_family_weights(self, module: nn.Module) -> None:
        """Hook for parameters that belong to no torch module type (learned tokens, codebooks).
        Use the guarded functions of `transformers.initialization` so loaded tensors are kept."""

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # transformers treats code outside its package as "custom" and then skips every module
        # that owns no tensor directly, so `_init_family_weights` would never see container
        # modules (the model itself included). Every init here is guarded, so visit them all.
        super()._initialize_weights(module, is_custom_code=False)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        super().initialize_weights()
        # transformers skips modules that own no tensors directly, so computed buffers of nested
        # modules are restored here, after every init and load path.
        for module in self.modules():
            if isinstance(module, ComputedBuffers):
                for name, value in module.computed_buffers().items():
                    buffer = module.get_buffer(name)
                    if buffer.device.type != "meta":
                        buffer.copy_(value.to(dtype=buffer.dtype, device=buffer.device))
