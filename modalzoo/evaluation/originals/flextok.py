"""`modalzoo bench --compare-original PATH` for FlexTok: the original apple/ml-flextok from a
checkout, with the benchmarked model's weights.

The original is built from `to_original_config(model.config)` (the converter run backwards) with
hydra's `instantiate`, its VAE replaced by a diffusers `AutoencoderKL` of the model's layout (no
download), and loaded strictly with `to_original_state_dict`. On CPU it runs its SDPA fallback
(dense masks, `use_flex_attention=False`, as the parity fixtures were recorded); on CUDA its
default compiled FlexAttention. Both sides sample with the model's `sampling_*` settings.

The original needs `hydra-core` and `mup` (`pip install hydra-core mup`); modalzoo does not.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import OriginalImplementation, checkout_on_path


def load_original(checkout: Path, model) -> OriginalImplementation:
    from diffusers.models import AutoencoderKL

    from modalzoo.conversion.flextok import to_original_config, to_original_state_dict

    config = model.config
    device = model.device
    on_cuda = device.type == "cuda"
    original_config = to_original_config(config, materialized_masks=not on_cuda)
    with checkout_on_path(checkout, "flextok"):
        try:
            from hydra.utils import instantiate

            from flextok.flextok_wrapper import FlexTok
            from flextok.model.layers.attention import FlexAttention
        except ImportError as error:
            raise ValueError(f"the original FlexTok needs hydra-core and mup installed ({error})") from error
        parts = {
            name: instantiate(original_config[name])
            for name in ("vae", "encoder", "decoder", "regularizer", "flow_matching_noise_module", "pipeline")
        }
    parts["vae"].vae = AutoencoderKL.from_config(model.vae.config)
    parts["vae"].freeze()
    original = FlexTok(**parts)
    original.load_state_dict(to_original_state_dict(model.state_dict(), config), strict=True)
    if not on_cuda:
        for module in original.modules():
            if isinstance(module, FlexAttention):
                module.use_flex_attention = False
    original = original.to(device=device, dtype=model.dtype).eval()

    @torch.inference_mode()
    def encode(pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.cat(original.tokenize(pixel_values))[:, None]

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> torch.Tensor:
        lengths = [codes.shape[-1]] * codes.shape[0] if codes_mask is None else codes_mask.sum(-1).tolist()
        tokens = [codes[i : i + 1, 0, :length] for i, length in enumerate(lengths)]
        return original.detokenize(
            tokens,
            vae_image_sizes=config.latent_size,
            timesteps=config.sampling_num_steps,
            guidance_scale=config.sampling_guidance_scale,
            perform_norm_guidance=config.sampling_norm_guidance,
            verbose=False,
        )

    return OriginalImplementation(encode, decode)
