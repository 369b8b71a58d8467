"""DM-Codec (Ahasan et al., arXiv 2410.15017): 16 kHz speech -> 8 x 1024 RVQ codes at 50 frames/s
-> speech, with the first RVQ stage distilled towards a language model (and a speech model).

SEANet encoder ending in a 2-layer bidirectional LSTM (transformers' `EncodecEncoder` with that
layer swapped, `modalzoo.layers.seanet`) -> EnCodec EMA residual VQ -> SEANet decoder
(transformers' `EncodecDecoder`); `transform` (Linear 1024 -> 768) maps the first stage's vectors
onto the teachers' width. `F` frames decode to exactly `F * 320` samples.

Batches of different lengths: the bidirectional LSTM carries information from the end of the
signal to every frame, so zero padding would change all of an item's codes. With a
`padding_mask`, `encode` therefore runs each group of equal-length items on its own real
samples (and `decode`, with `codes_mask`, each group on its own frames): a padded item gets
exactly the codes and audio it gets alone. Without a mask the whole tensor is one signal.
"""

from __future__ import annotations

import torch
from torch import nn

from ...audio_utils import ChunkedCodecMixin, check_audio_input, frames_mask, lengths_from_mask, num_frames
from ...layers.seanet import SEANetDecoder, SEANetEncoder
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers.euclidean_residual_quantizer import EuclideanResidualQuantizer
from .configuration_dm_codec import DMCodecConfig
from .losses_dm_codec import combine_distill_losses, d_axis_distill_loss, multi_scale_mel_loss, reconstruction_loss


class DMCodecModel(ChunkedCodecMixin, ModalTokenizer):
    config_class = DMCodecConfig
    modality = "speech"
    main_input_name = "input_values"
    input_modalities = "audio"

    def __init__(self, config: DMCodecConfig):
        super().__init__(config)
        seanet = dict(
            channels=1,
            dimension=config.hidden_size,
            num_filters=config.num_filters,
            ratios=config.downsampling_ratios,
            num_residual_layers=config.num_residual_layers,
            residual_kernel_size=config.residual_kernel_size,
            dilation_base=config.dilation_base,
            num_lstm_layers=config.num_lstm_layers,
        )
        self.encoder = SEANetEncoder(**seanet, bidirectional_lstm=config.bidirectional_lstm)
        self.quantizer = EuclideanResidualQuantizer(
            dim=config.hidden_size,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            decay=config.codebook_decay,
            epsilon=config.codebook_epsilon,
            kmeans_init=True,
            kmeans_iters=config.codebook_kmeans_iters,
            threshold_ema_dead_code=config.codebook_dead_code_threshold,
        )
        self.decoder = SEANetDecoder(**seanet)
        if config.semantic_dimension != config.hidden_size:
            self.transform = nn.Linear(config.hidden_size, config.semantic_dimension)
        else:
            self.transform = nn.Identity()
        self.post_init()

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    # ----- teachers (training only, never in the state dict) ------------------------------------
    @property
    def teachers(self):
        """The distillation teachers of `config.distill_teacher`, loaded on first use with
        `from_pretrained` (repo ids or local folders). Kept out of the module tree, so they are
        neither saved, nor trained, nor wrapped by DDP."""
        teachers = self.__dict__.get("_teachers")
        if teachers is None and self.config.distill_teacher is not None:
            from .distillation_dm_codec import DMCodecTeachers

            teachers = DMCodecTeachers(self.config)
            self.set_teachers(teachers)
        return teachers

    def set_teachers(self, teachers: nn.Module | None) -> None:
        """Attaches teachers built elsewhere (a callable audio -> dict of teacher features)."""
        self.__dict__["_teachers"] = teachers

    # ----- encode -----------------------------------------------------------------------------
    def _prepare(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        check_audio_input(input_values, padding_mask)
        audio = input_values.to(self.decoder.layers[0].conv.bias.dtype)
        if padding_mask is not None:
            audio = audio * padding_mask[:, None].to(audio.dtype)
        return audio

    def _encode_codes(self, audio: torch.Tensor, num_quantizers: int) -> torch.LongTensor:
        return self.quantizer.encode(self.encoder(audio).transpose(1, 2), num_quantizers)

    def _encode_groups(self, audio, padding_mask, run) -> torch.LongTensor:
        lengths = lengths_from_mask(padding_mask, audio.shape[0], audio.shape[-1])
        if min(lengths) < 1:
            raise ValueError("every item needs at least one real sample in padding_mask")
        codes = None
        for length in sorted(set(lengths)):
            items = torch.tensor([i for i, n in enumerate(lengths) if n == length], device=audio.device)
            group = run(audio[items, :, :length])
            if codes is None:
                codes = group.new_zeros(audio.shape[0], group.shape[1], num_frames(audio.shape[-1], self.hop_length))
            codes[items, :, : group.shape[-1]] = group
        return codes

    @torch.no_grad()
    def encode(
        self,
        input_values: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        num_quantizers: int | None = None,
        return_semantic_features: bool = False,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> EncoderOutput:
        """`input_values` `[B, 1, T]` at 16 kHz (+ `padding_mask` `[B, T]`, 1 on real samples) ->
        codes `[B, num_quantizers, ceil(T / 320)]` (first `num_quantizers` of 8 stages, 0.5 kbps
        each) and `codes_mask` `[B, frames]`.

        `return_semantic_features`: also `latents` = `transform` of the first stage's vectors,
        `[B, frames, semantic_dimension]` (the distilled representation).
        `chunk_length_s` encodes long audio window by window with `chunk_overlap_s` (default 1 s)
        of context on each side: bounded memory, the same frames; codes near window edges can
        differ from a whole-signal encode (the bidirectional LSTM sees only the window).
        """
        depth = self.quantizer.check_depth(num_quantizers)
        audio = self._prepare(input_values, padding_mask)

        def run(piece: torch.Tensor) -> torch.LongTensor:
            if chunk_length_s is None:
                return self._encode_codes(piece, depth)
            return self.chunked_encode(lambda w: self._encode_codes(w, depth), piece, chunk_length_s, chunk_overlap_s)

        if padding_mask is None:
            codes, mask = run(audio), None
        else:
            codes = self._encode_groups(audio, padding_mask, run)
            mask = frames_mask(padding_mask, self.hop_length, codes.shape[-1])
        latents = self.semantic_features(codes) if return_semantic_features else None
        return EncoderOutput(codes=codes, codes_mask=mask, latents=latents)

    def semantic_features(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, >=1, F]` -> `transform(first-stage vectors)` `[B, F, semantic_dimension]`,
        what the original's `forward` returns as `feature` in eval mode."""
        codes = self.check_codes(codes)
        return self.transform(self.quantizer.lookup(codes[:, :1]))

    # ----- decode -----------------------------------------------------------------------------
    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Continuous latents `[B, hidden_size, F]` (summed codebook vectors) -> `[B, 1, F * hop]`."""
        return self.decoder(latents.to(self.decoder.layers[0].conv.bias.dtype))

    def _decode_values(self, codes: torch.Tensor, chunk_length_s, chunk_overlap_s) -> torch.Tensor:
        def decode_fn(piece: torch.Tensor) -> torch.Tensor:
            return self.synthesize(self.quantizer.lookup(piece).transpose(1, 2))

        if chunk_length_s is None:
            return decode_fn(codes)
        return self.chunked_decode(decode_fn, codes, chunk_length_s, chunk_overlap_s)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> DecoderOutput:
        """Codes `[B, n, F]` (the first n <= 8 stages) -> audio `[B, 1, F * 320]` at 16 kHz.

        With `codes_mask`, each item is decoded from its own frames only and `values_mask` marks
        its samples (padding is zero). `chunk_length_s` / `chunk_overlap_s` as in `encode`.
        """
        codes = self.check_codes(codes)
        if codes_mask is None:
            return DecoderOutput(values=self._decode_values(codes, chunk_length_s, chunk_overlap_s))
        values, values_mask = self.decode_each_item(
            codes, codes_mask, lambda items, group: self._decode_values(group, chunk_length_s, chunk_overlap_s)
        )
        return DecoderOutput(values=values, values_mask=values_mask)

    # ----- training ---------------------------------------------------------------------------
    def distillation_loss(
        self,
        semantic_features: torch.Tensor,
        speech_teacher_features: torch.Tensor | None = None,
        text_teacher_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The original's d-axis loss of `transform(first stage)` `[B, F, D]` against the
        teachers' features `[B, frames, D]`, weighted by `config.distill_teacher` /
        `distill_weights` ("llm": LM only; "combined": LM + SM)."""
        teacher = self.config.distill_teacher
        if teacher is None:
            teacher = {(True, False): "hubert", (False, True): "llm", (True, True): "combined"}.get(
                (speech_teacher_features is not None, text_teacher_features is not None)
            )
            if teacher is None:
                raise ValueError("no teacher features given and the config sets no distill_teacher")
        needed = {"hubert": ("speech",), "llm": ("text",), "combined": ("speech", "text")}[teacher]
        given = {"speech": speech_teacher_features, "text": text_teacher_features}
        missing = [name for name in needed if given[name] is None]
        if missing:
            raise ValueError(f"distill_teacher={teacher!r} needs {', '.join(f'{m}_teacher_features' for m in missing)}")
        speech = d_axis_distill_loss(semantic_features, speech_teacher_features) if "speech" in needed else None
        text = d_axis_distill_loss(semantic_features, text_teacher_features) if "text" in needed else None
        return combine_distill_losses(teacher, speech, text, self.config.distill_weights)

    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        num_quantizers: int | None = None,
        speech_teacher_features: torch.Tensor | None = None,
        text_teacher_features: torch.Tensor | None = None,
    ) -> TokenizerOutput:
        """Encode, quantise (EMA codebook updates in training) and decode. Returns the original
        generator's terms: `reconstruction` (time L1), `mel` (sum of the scales' log-mel L1 times
        `mel_loss_lambdas`), `commitment`, and `distillation` when teacher features are given or
        `config.distill_teacher` names teachers (then computed online from `input_values`).
        `loss` weights them as the original (500, 1, 10, 120); adversarial and feature-matching
        terms belong to the trainer's discriminators."""
        audio = self._prepare(input_values, padding_mask)
        quantized = self.quantizer(self.encoder(audio).transpose(1, 2), num_quantizers)
        values = self.synthesize(quantized.quantized.transpose(1, 2))[..., : audio.shape[-1]]
        if padding_mask is not None:
            values = values * padding_mask[:, None].to(values.dtype)
        losses = {
            "reconstruction": reconstruction_loss(audio, values),
            "mel": multi_scale_mel_loss(audio, values, self.config),
            "commitment": quantized.loss,
        }
        if speech_teacher_features is None and text_teacher_features is None and self.config.distill_teacher is not None:
            teachers = self.teachers
            teachers.to(audio.device)
            targets = teachers(audio)
            speech_teacher_features = targets.get("speech_teacher_features")
            text_teacher_features = targets.get("text_teacher_features")
        if speech_teacher_features is not None or text_teacher_features is not None:
            semantic = self.transform(quantized.stage_quantized[0])
            losses["distillation"] = self.distillation_loss(semantic, speech_teacher_features, text_teacher_features)
        config = self.config
        loss = (
            config.reconstruction_loss_weight * losses["reconstruction"]
            + losses["mel"]
            + config.commitment_loss_weight * losses["commitment"]
        )
        if "distillation" in losses:
            loss = loss + config.distillation_loss_weight * losses["distillation"]
        return TokenizerOutput(loss=loss, losses=losses, codes=quantized.codes, values=values)
