"""WavTokenizer (Ji et al., ICLR 2025): 24 kHz audio -> one code per frame (40 or 75 frames/s,
4096 codes) -> audio.

SEANet encoder (transformers' `EncodecEncoder`) -> EMA Euclidean codebook -> attention-enhanced
Vocos backbone -> ISTFT head with "same" padding; `F` frames decode to exactly `F * hop` samples.

Batches of different lengths. `encode` runs the batch in one pass: the encoder has no
normalisation over time and its LSTM is causal, so only the convolutions' right-hand context
reaches past an item's end. A zero-padded item therefore encodes to exactly its codes alone
except in its last 4 frames (`PADDED_EDGE_FRAMES`, the same at 75 and 40 tokens/s), where the
reflect padding it gets alone becomes the batch's zeros. Elsewhere the latents agree to float
rounding (the batched LSTM sums in another order, ~1e-7), which can flip a code only at a near-tie
of two codebook entries; none occurred on the converted original weights or the test model.
`decode` instead runs each group of equal-length items separately, because the decoder's
GroupNorm statistics and attention span the whole sequence: decoding with padding would change
every frame. With `codes_mask`, each item is decoded exactly as it would be alone.
"""

from __future__ import annotations

import torch

from ...audio_utils import ChunkedCodecMixin, check_audio_input, frames_mask
from ...layers.mel import MelSpectrogramLoss
from ...layers.seanet import SEANetEncoder
from ...layers.vocos import ISTFTHead, VocosBackbone
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers.euclidean_codebook import EuclideanCodebook
from .configuration_wavtokenizer import WavTokenizerConfig


class WavTokenizerModel(ChunkedCodecMixin, ModalTokenizer):
    config_class = WavTokenizerConfig
    modality = "audio"
    # Trailing frames of an item whose encoder receptive field reaches past its end (see above).
    PADDED_EDGE_FRAMES = 4
    main_input_name = "input_values"
    input_modalities = "audio"

    def __init__(self, config: WavTokenizerConfig):
        super().__init__(config)
        self.encoder = SEANetEncoder(
            channels=1,
            dimension=config.hidden_size,
            num_filters=config.encoder_num_filters,
            ratios=config.downsampling_ratios,
            num_residual_layers=config.encoder_num_residual_layers,
            kernel_size=config.encoder_kernel_size,
            last_kernel_size=config.encoder_last_kernel_size,
            residual_kernel_size=config.encoder_residual_kernel_size,
            dilation_base=config.encoder_dilation_base,
            compress=config.encoder_compress,
            num_lstm_layers=config.encoder_num_lstm_layers,
        )
        self.codebook = EuclideanCodebook(
            dim=config.hidden_size,
            codebook_size=config.codebook_size,
            decay=config.codebook_decay,
            epsilon=config.codebook_epsilon,
            kmeans_init=True,
            kmeans_iters=config.codebook_kmeans_iters,
            threshold_ema_dead_code=config.codebook_dead_code_threshold,
        )
        self.backbone = VocosBackbone(
            input_channels=config.hidden_size,
            dim=config.decoder_dim,
            intermediate_dim=config.decoder_intermediate_dim,
            num_layers=config.decoder_num_layers,
            layer_scale_init_value=config.decoder_layer_scale_init_value,
            adanorm_num_embeddings=config.adanorm_num_embeddings,
            use_pos_net=True,
            pos_net_num_groups=config.decoder_num_groups,
            pos_net_dropout=config.decoder_dropout,
        )
        self.head = ISTFTHead(dim=config.decoder_dim, n_fft=config.n_fft, hop_length=config.hop_length)
        # Holds only non-persistent buffers: nothing of it reaches the state dict.
        self.mel_loss = MelSpectrogramLoss(sampling_rate=config.sampling_rate)
        self.post_init()

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    # ----- encode -----------------------------------------------------------------------------
    def _prepare(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        check_audio_input(input_values, padding_mask)
        audio = input_values.to(self.head.out.weight.dtype)
        if padding_mask is not None:
            audio = audio * padding_mask[:, None].to(audio.dtype)
        return audio

    def _encode_codes(self, audio: torch.Tensor) -> torch.LongTensor:
        return self.codebook.encode(self.encoder(audio).transpose(1, 2))

    @torch.no_grad()
    def encode(
        self,
        input_values: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> EncoderOutput:
        """`input_values` `[B, 1, T]` at `sampling_rate` (+ `padding_mask` `[B, T]`, 1 on real
        samples) -> codes `[B, 1, ceil(T / hop)]` and `codes_mask` `[B, frames]`.

        `chunk_length_s` encodes long audio window by window with `chunk_overlap_s` (default 1 s)
        of context on each side: bounded memory, the same number of frames.
        """
        audio = self._prepare(input_values, padding_mask)
        if chunk_length_s is None:
            codes = self._encode_codes(audio)
        else:
            codes = self.chunked_encode(self._encode_codes, audio, chunk_length_s, chunk_overlap_s)
        mask = None if padding_mask is None else frames_mask(padding_mask, self.hop_length, codes.shape[-1])
        return EncoderOutput(codes=codes, codes_mask=mask)

    # ----- decode -----------------------------------------------------------------------------
    def synthesize(self, features: torch.Tensor, bandwidth_id=0) -> torch.Tensor:
        """Continuous features `[B, hidden_size, F]` (codebook vectors) -> audio `[B, 1, F * hop]`."""
        hidden = self.backbone(features.to(self.head.out.weight.dtype), bandwidth_id)
        return self.head(hidden).unsqueeze(1)

    def _decode_values(self, codes: torch.Tensor, bandwidth_id, chunk_length_s, chunk_overlap_s) -> torch.Tensor:
        def decode_fn(piece: torch.Tensor) -> torch.Tensor:
            return self.synthesize(self.codebook.lookup(piece).transpose(1, 2), bandwidth_id)

        if chunk_length_s is None:
            return decode_fn(codes)
        return self.chunked_decode(decode_fn, codes, chunk_length_s, chunk_overlap_s)

    def decode(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        bandwidth_id: int | torch.Tensor = 0,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> DecoderOutput:
        """Codes `[B, 1, F]` -> audio `[B, 1, F * hop]` at `sampling_rate`.

        With `codes_mask`, each item is decoded from its own frames only and `values_mask` marks
        its samples (padding is zero). `bandwidth_id` selects the AdaLayerNorm row (0 in every
        release's inference). `chunk_length_s` / `chunk_overlap_s` as in `encode`.
        """
        codes = self.check_codes(codes)
        if codes_mask is None:
            values = self._decode_values(codes, bandwidth_id, chunk_length_s, chunk_overlap_s)
            return DecoderOutput(values=values)
        per_item_bandwidth = torch.is_tensor(bandwidth_id) and bandwidth_id.numel() > 1

        def decode_group(items: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
            group_bandwidth = bandwidth_id[items] if per_item_bandwidth else bandwidth_id
            return self._decode_values(group, group_bandwidth, chunk_length_s, chunk_overlap_s)

        values, values_mask = self.decode_each_item(codes, codes_mask, decode_group)
        return DecoderOutput(values=values, values_mask=values_mask)

    # ----- training ---------------------------------------------------------------------------
    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bandwidth_id: int | torch.Tensor | None = None,
    ) -> TokenizerOutput:
        """Encode, quantise (EMA codebook updates in training) and decode. Returns the generator's
        reconstruction terms: `mel` (log-mel L1) and `commitment`; `loss` weights them as the
        original (45, 1000). Adversarial terms belong to the trainer's discriminators."""
        audio = self._prepare(input_values, padding_mask)
        quantized = self.codebook(self.encoder(audio).transpose(1, 2))
        if bandwidth_id is None:
            # The original draws one AdaLayerNorm row per training step and uses row 0 otherwise.
            num_rows = self.config.adanorm_num_embeddings
            bandwidth_id = int(torch.randint(num_rows, ())) if self.training and num_rows else 0
        values = self.synthesize(quantized.quantized.transpose(1, 2), bandwidth_id)[..., : audio.shape[-1]]
        if padding_mask is not None:
            values = values * padding_mask[:, None].to(values.dtype)
        losses = {"mel": self.mel_loss(values, audio), "commitment": quantized.loss}
        loss = self.config.mel_loss_weight * losses["mel"] + self.config.commitment_loss_weight * losses["commitment"]
        return TokenizerOutput(loss=loss, losses=losses, codes=quantized.codes, values=values)
