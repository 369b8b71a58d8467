"""SemantiCodec (Liu et al., IEEE JSTSP 2024): 16 kHz audio -> [semantic, acoustic] codes at
12.5-50 frames/s (0.31-1.40 kbps) -> audio through a latent-diffusion decoder.

Encoding runs every 10.24 s filterbank segment of every item as one batch through the encoder
(`encoder_semanticodec.py`); segments never see each other, exactly as the original's loop.
Codes are trimmed per item with the original's rule (the duration rounded up past the next
0.16 s AudioMAE patch boundary), so a padded item encodes to exactly its codes alone: the
feature extractor computes each item's filterbank from its own samples, and the later segments
of a batch hold constant rows that only produce masked frames.
"""

from __future__ import annotations

import math

import torch
from transformers import initialization as init

from ...audio_utils import check_audio_input, lengths_from_mask
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from .configuration_semanticodec import MEL_FRAME_SHIFT_SAMPLES, SemantiCodecConfig
from .decoder_semanticodec import SemantiCodecDecoder, _sinusoidal_positions
from .encoder_semanticodec import AudioMAEEncoder, SemantiCodecEncoder, mark_out_padding
from .processing_semanticodec import audioldm_log_mel, batch_fbank, num_segments


class SemantiCodecModel(ModalTokenizer):
    config_class = SemantiCodecConfig
    modality = "audio"
    main_input_name = "input_values"
    input_modalities = "audio"
    _no_split_modules = ["Block"]

    def __init__(self, config: SemantiCodecConfig):
        super().__init__(config)
        self.encoder = SemantiCodecEncoder(config)
        self.decoder = None
        if config.decoder is not None:
            self.decoder = SemantiCodecDecoder(config.decoder, feature_dim=2 * config.feature_dim)
            if self.decoder.samples_per_frame != config.hop_length:
                raise ValueError(
                    f"the decoder renders {self.decoder.samples_per_frame} samples per frame but the encoder's hop is "
                    f"{config.hop_length} ({config.tokens_per_second} tokens/s): use the decoder config of that token rate"
                )
            # frozen in SemantiCodec's training (AudioLDM's VAE and HiFi-GAN)
            self.decoder.vae.requires_grad_(False)
            self.decoder.vocoder.requires_grad_(False)
        self.post_init()

    def _init_family_weights(self, module) -> None:
        if isinstance(module, AudioMAEEncoder):
            init.normal_(module.cls_token, std=0.02)  # as MaskedAutoencoderViT.initialize_weights

    @torch.no_grad()
    def initialize_weights(self) -> None:
        super().initialize_weights()
        # The decoder's position table is a non-persistent buffer that from_pretrained's meta
        # loading leaves unset: recompute it after every init and load path.
        if self.decoder is not None and self.decoder.position_embedding.device.type != "meta":
            decoder_config = self.decoder.config
            table = _sinusoidal_positions(decoder_config["position_length"], decoder_config["position_dim"])
            self.decoder.position_embedding.copy_(table.to(self.decoder.position_embedding.device))

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    # ----- encode -----------------------------------------------------------------------------
    def num_frames(self, num_samples: int) -> int:
        """Code frames the original keeps for `num_samples` (`SemantiCodec.encode`): the duration
        rounded up past the next AudioMAE patch boundary (a whole extra patch when it already
        lies on one), in the original's float arithmetic so the count matches it exactly."""
        config = self.config
        patch_duration = config.patch_size * MEL_FRAME_SHIFT_SAMPLES / config.sampling_rate  # 0.16 s
        frequency_patches = config.num_mel_bins // config.patch_size  # 8
        duration = num_samples / config.sampling_rate
        duration = duration + (patch_duration - duration % patch_duration)
        return math.ceil(frequency_patches * duration / patch_duration / (100 / config.tokens_per_second))

    def _lengths_and_features(self, input_values, padding_mask, input_features) -> tuple[list[int], torch.Tensor]:
        segment = self.config.segment_frames
        if input_values is not None:
            check_audio_input(input_values, padding_mask)
            lengths = lengths_from_mask(padding_mask, input_values.shape[0], input_values.shape[-1])
            if min(lengths) < 1:
                raise ValueError("every item needs at least one real sample in padding_mask")
        elif input_features is None:
            raise ValueError("encode needs input_values [batch, 1, samples] (16 kHz) or input_features from the feature extractor")
        elif padding_mask is None:
            raise ValueError("input_features without input_values need padding_mask [batch, samples] to trim each item's codes")
        else:
            lengths = lengths_from_mask(padding_mask, padding_mask.shape[0], padding_mask.shape[-1])
        if input_features is None:
            input_features = batch_fbank(input_values, lengths)
        expected = (len(lengths), self.config.num_mel_bins)
        if input_features.ndim != 3 or (input_features.shape[0], input_features.shape[2]) != expected or input_features.shape[1] % segment:
            raise ValueError(
                f"input_features must be [batch, segments * {segment}, {self.config.num_mel_bins}] with batch {len(lengths)} "
                f"(use the model's feature extractor), got {tuple(input_features.shape)}"
            )
        needed = max(num_segments(n) for n in lengths) * segment
        if input_features.shape[1] < needed:
            raise ValueError(f"input_features hold {input_features.shape[1]} frames; the longest item needs {needed}")
        return lengths, input_features[:, :needed]

    def _encode_segments(self, features: torch.Tensor):
        """`[B, S * 1024, bins]` -> semantic codes, acoustic `QuantizerOutput`, both over B * S segments."""
        batch, frames, bins = features.shape
        segments = features.reshape(batch * (frames // self.config.segment_frames), self.config.segment_frames, bins)
        return self.encoder(segments.to(self.encoder.acoustic_proj.weight.dtype))

    @torch.no_grad()
    def encode(
        self,
        input_values: torch.Tensor | None = None,
        *,
        padding_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """`input_values` `[B, 1, T]` at 16 kHz (+ `padding_mask` `[B, T]`, 1 on real samples), or
        the feature extractor's `input_features` with them -> codes `[B, 2, frames]` (row 0
        semantic k-means ids, row 1 acoustic VQ ids) and `codes_mask` `[B, frames]` (None when every
        item has the same number of frames). `latents` `[B, frames, 2 * feature_dim]` is the
        decoder conditioning the original's encoder produces (`dequantize`, with frames of silent
        padding set to -1)."""
        lengths, features = self._lengths_and_features(input_values, padding_mask, input_features)
        semantic, acoustic, real_frames = self._encode_segments(features)
        batch = len(lengths)
        segment_codes = torch.stack([semantic, acoustic.codes[:, 0]], dim=1)  # [B * S, 2, frames per segment]
        # the conditioning as the original's encoder builds it: frames of silent padding set to -1
        latents = mark_out_padding(self.dequantize(segment_codes), real_frames, self.config.segment_frames)
        frames = [self.num_frames(n) for n in lengths]
        codes = segment_codes.reshape(batch, -1, 2, segment_codes.shape[-1]).permute(0, 2, 1, 3).reshape(batch, 2, -1)
        codes = codes[..., : max(frames)]
        latents = latents.reshape(batch, -1, latents.shape[-1])[:, : max(frames)]
        mask = None
        if len(set(frames)) > 1:
            mask = torch.arange(codes.shape[-1], device=codes.device)[None] < torch.tensor(frames, device=codes.device)[:, None]
        return EncoderOutput(codes=codes, codes_mask=mask, latents=latents)

    # ----- decode -----------------------------------------------------------------------------
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, 2, F]` -> the decoder's conditioning `[B, F, 2 * feature_dim]`: the acoustic VQ
        vector FIRST, then the semantic centroid, exactly the tensor the original hands to the
        diffusion model (`token_to_quantized_feature`; `_forward`'s `representation_quant`) before
        it appends the 192-d sinusoidal positional embedding. That embedding, the -1 filling of
        frames past an item's end and the windowing belong to the decoder."""
        codes = self.check_codes(codes, min_positions=1)
        if codes.shape[1] != 2:
            raise ValueError(f"codes must hold 2 rows [semantic, acoustic], got {codes.shape[1]}")
        acoustic = self.encoder.acoustic_quantizer.lookup(codes[:, 1:2])
        semantic = self.encoder.semantic_quantizer.lookup(codes[:, 0])
        dtype = self.encoder.acoustic_proj.weight.dtype  # codebooks stay fp32 under bf16 loads
        return torch.cat([acoustic.to(dtype), semantic.to(dtype)], dim=-1)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        num_steps: int = 50,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput:
        """Codes `[B, 2, F]` -> audio `[B, 1, F * hop]` at 16 kHz by DDIM sampling (`num_steps`,
        classifier-free `guidance_scale`; a seeded `generator` gives bit-identical output). With
        `codes_mask`, frames past each item's end are given to the decoder as padding and
        `values_mask` marks each item's samples."""
        if self.decoder is None:
            raise ValueError("this SemantiCodec model was built without a decoder (config.decoder is None); it can only encode")
        features = self.dequantize(codes)
        if codes_mask is not None and tuple(codes_mask.shape) != (codes.shape[0], codes.shape[-1]):
            raise ValueError(f"codes_mask must be [batch, frames] = {(codes.shape[0], codes.shape[-1])}, got {tuple(codes_mask.shape)}")
        waveform = self.decoder.generate(
            features, num_steps=num_steps, guidance_scale=guidance_scale, generator=generator, features_mask=codes_mask
        )
        samples = codes.shape[-1] * self.hop_length
        values = torch.nn.functional.pad(waveform, (0, max(0, samples - waveform.shape[-1])))[:, None, :samples]
        if codes_mask is None:
            return DecoderOutput(values=values)
        values_mask = codes_mask.bool().repeat_interleave(self.hop_length, dim=-1)
        return DecoderOutput(values=values * values_mask[:, None], values_mask=values_mask)

    # ----- training ---------------------------------------------------------------------------
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """Encodes with the acoustic codebook in training mode (EMA updates) and returns the terms
        the paper trains the acoustic encoder and the diffusion UNet with, jointly:

        * `commitment`: the acoustic VectorQuantize's loss (already weighted by `commitment_weight`);
        * `diffusion` (with `input_values` and a decoder): MSE of the UNet's v-prediction on the
          first decoder window, i.e. `q_sample` / `get_v` of the original's DDPM on the frozen VAE's
          latent of the window's log-mel (`audioldm_log_mel`), at a uniform timestep, with the
          conditioning replaced by the unconditional one for a `condition_dropout` share of the
          items (classifier-free guidance). The original releases no training code: the mel
          settings and the dropout rate are AudioLDM's.
        """
        lengths, features = self._lengths_and_features(input_values, padding_mask, input_features)
        semantic, acoustic, real_frames = self._encode_segments(features)
        batch = len(lengths)
        codes = torch.stack([semantic, acoustic.codes[:, 0]], dim=1)
        codes = codes.reshape(batch, -1, 2, codes.shape[-1]).permute(0, 2, 1, 3).reshape(batch, 2, -1)
        losses = {"commitment": acoustic.loss}
        values = None
        if self.decoder is not None and input_values is not None:
            centroids = self.encoder.semantic_quantizer.lookup(semantic).to(acoustic.quantized.dtype)
            conditioning = mark_out_padding(torch.cat([acoustic.quantized, centroids], dim=-1), real_frames, self.config.segment_frames)
            conditioning = conditioning.reshape(batch, -1, conditioning.shape[-1])
            losses["diffusion"], values = self._diffusion_loss(conditioning, input_values, lengths, generator)
        loss = sum(losses.values())
        codes = codes[..., : max(self.num_frames(n) for n in lengths)]
        return TokenizerOutput(loss=loss, losses=losses, codes=codes, values=values)

    def _diffusion_loss(self, conditioning, input_values, lengths, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(the v-prediction MSE, the one-step clean estimate of the window as audio `[B, 1, T]`,
        detached: what the trainer logs and shows as a training-time reconstruction)."""
        decoder = self.decoder
        window_frames, window_samples = decoder.window_frames, decoder.window_samples
        pad_value = float(decoder.config["pad_value"])
        # the first window, frames past each item's end given as padding (as `decode` does)
        frames = torch.tensor([self.num_frames(n) for n in lengths], device=conditioning.device)
        window = conditioning[:, :window_frames]
        window = torch.nn.functional.pad(window, (0, 0, 0, window_frames - window.shape[1]), value=pad_value)
        beyond = torch.arange(window_frames, device=window.device)[None] >= frames[:, None]
        window = window.masked_fill(beyond[..., None], pad_value)

        audio = input_values[:, 0, :window_samples].float()
        audio = audio * (torch.arange(audio.shape[-1], device=audio.device)[None] < torch.tensor(lengths, device=audio.device)[:, None])
        audio = torch.nn.functional.pad(audio, (0, window_samples - audio.shape[-1]))
        mel_bins = decoder.config["vae"]["mel_bins"]
        mel_frames = decoder.latent_shape[1] * (2 ** (len(decoder.config["vae"]["ch_mult"]) - 1))
        mel = audioldm_log_mel(audio, n_mels=mel_bins)[:, :mel_frames]
        mel = torch.nn.functional.pad(mel, (0, 0, 0, mel_frames - mel.shape[1]))
        vae_dtype = decoder.vae.dtype
        with torch.no_grad():  # the VAE is frozen (AudioLDM's)
            posterior = decoder.vae.encode(mel[:, None].to(vae_dtype)).latent_dist
            latents = posterior.sample(generator=generator) * decoder.scale_factor

        timesteps = torch.randint(0, len(decoder.alphas_cumprod), (latents.shape[0],), generator=generator).to(latents.device)
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)
        alpha = decoder.alphas_cumprod[timesteps].to(latents.dtype).view(-1, 1, 1, 1)
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        target = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
        context, unconditional = decoder.context(window.to(vae_dtype))
        dropped = torch.rand(latents.shape[0], generator=generator).to(latents.device) < self.config.condition_dropout
        context = torch.where(dropped[:, None, None], unconditional, context)
        prediction = decoder.unet(noisy, timesteps, encoder_hidden_states=context, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(prediction.float(), target.float())
        with torch.no_grad():  # x0 = sqrt(a) x_t - sqrt(1 - a) v (`predict_start_from_z_and_v`)
            estimate = decoder.latents_to_waveform(alpha.sqrt() * noisy - (1 - alpha).sqrt() * prediction.detach())
        estimate = estimate.reshape(estimate.shape[0], 1, -1)[..., : input_values.shape[-1]]
        values = torch.nn.functional.pad(estimate, (0, input_values.shape[-1] - estimate.shape[-1])).to(input_values.dtype)
        return loss, values
