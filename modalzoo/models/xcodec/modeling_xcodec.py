"""X-Codec (Ye et al., "Codec Does Matter", AAAI 2025): 16 kHz audio -> 50 frames/s of up to 8
residual codes (1024 entries each) -> audio, with a frozen HuBERT / WavLM teacher fused into the
codes.

`XcodecTokenizer` *is* transformers' `XcodecModel` (a subclass: the same modules under the same
names, built by `XcodecModel.__init__`), so one state dict serves both and an `hf-audio/xcodec-*`
folder loads with `XcodecTokenizer.from_pretrained`. The numerics of encode / decode are
transformers' own modules called in transformers' order; what this class adds is the modalzoo
contract and what transformers lacks:

* `encode(input_values, padding_mask=..., bandwidth= | num_quantizers=)` -> `codes`, `codes_mask`;
  `decode(codes, codes_mask=...)` -> `values`, `values_mask`.
* Batches of different lengths in one pass, each item computed as if it were alone (see
  "Batches" below).
* Chunked long audio (`chunk_length_s`), memory bounded by the window.
* Training: an EMA residual quantizer and the original's loss terms (`forward`).

Batches. Every layer that mixes time steps is made to see, for each item, exactly what it sees
when that item is encoded alone (padded by the feature extractor to whole frames):
the teacher's first GroupNorm takes its statistics over the item's own frames, its transformer
gets the attention mask, and every convolution of the acoustic encoder, the semantic encoder
and the decoder sees zeros past the item's end, as its zero padding does for the item alone.
The results equal the item-alone results up to float summation order (measured in the tests);
a batch whose items all have the full length runs transformers' path unchanged.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from transformers import XcodecModel

from ...audio_utils import ChunkedCodecMixin, check_audio_input, frames_mask
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from .configuration_xcodec import XcodecTokenizerConfig
from .losses_xcodec import XcodecGeneratorLoss, feature_matching_loss, mse_generator_loss, semantic_reconstruction_loss
from .quantization_xcodec import XcodecResidualQuantizer


@contextlib.contextmanager
def zero_past_end(modules: list[nn.Module], frame_lengths: torch.Tensor, total_frames: int):
    """Within the block, every Conv1d / ConvTranspose1d in `modules` sees its input zeroed past
    each item's end. An item's end at a layer is its frame count times the layer's steps per
    frame (every layer here runs at a whole multiple or fraction of the frame rate)."""

    masks: dict[tuple, torch.Tensor] = {}

    def zero_tail(module, args):
        hidden = args[0]
        steps = hidden.shape[-1]
        if steps % total_frames:
            raise RuntimeError(f"{type(module).__name__} input of {steps} steps is not a multiple of {total_frames} frames")
        key = (steps, hidden.device)
        if key not in masks:
            ends = frame_lengths.to(hidden.device) * (steps // total_frames)
            masks[key] = (torch.arange(steps, device=hidden.device)[None] >= ends[:, None])[:, None]
        if torch.is_grad_enabled():
            return (hidden.masked_fill(masks[key], 0.0), *args[1:])
        # Without autograd, in place: every conv input here is a fresh activation, the input audio
        # (already zero past each item's end) or the teacher features, whose padded frames
        # nothing reads afterwards.
        hidden.masked_fill_(masks[key], 0.0)
        return None

    handles = [
        layer.register_forward_pre_hook(zero_tail)
        for module in modules
        for layer in module.modules()
        # a pointwise conv never mixes time steps: what lies past the end stays there
        if isinstance(layer, nn.ConvTranspose1d) or (isinstance(layer, nn.Conv1d) and layer.kernel_size != (1,))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def group_norm_per_item(feature_encoder: nn.Module, sample_lengths: torch.Tensor):
    """The teacher's feature encoder normalises its first conv layer over time (GroupNorm with
    one group per channel, as in HuBERT / WavLM base): within the block each item is normalised
    over its own steps only, with the same kernel call as when it runs alone."""
    convs = [m for m in feature_encoder.modules() if isinstance(m, nn.Conv1d)]
    norms = [m for m in feature_encoder.modules() if isinstance(m, nn.GroupNorm)]
    if not norms:
        yield
        return
    if len(norms) > 1:
        raise NotImplementedError("teachers with more than one GroupNorm in their feature encoder")
    first = convs[0]
    steps = (sample_lengths - first.kernel_size[0]) // first.stride[0] + 1

    def per_item(module, args, output):
        hidden = args[0]
        output = output.clone()
        for index, length in enumerate(steps.tolist()):
            output[index : index + 1, :, :length] = F.group_norm(
                hidden[index : index + 1, :, :length], module.num_groups, module.weight, module.bias, module.eps
            )
        return output

    handle = norms[0].register_forward_hook(per_item)
    try:
        yield
    finally:
        handle.remove()


class XcodecTokenizer(ChunkedCodecMixin, ModalTokenizer, XcodecModel):
    config_class = XcodecTokenizerConfig
    modality = "audio"
    main_input_name = "input_values"
    input_modalities = "audio"
    base_model_prefix = "xcodec"
    _no_split_modules = ["XcodecResidualQuantizer"]

    def __init__(self, config: XcodecTokenizerConfig):
        super().__init__(config)  # XcodecModel.__init__ builds every module, then calls post_init

    def post_init(self):
        # Runs at the end of XcodecModel.__init__: swap in the trainable quantizer (same keys,
        # same inference arithmetic) before the weights are initialised.
        if not isinstance(self.quantizer, XcodecResidualQuantizer):
            self.quantizer = XcodecResidualQuantizer(self.config)
            # The teacher is frozen: no gradients, no dropout / SpecAugment / LayerDrop.
            self.semantic_model.requires_grad_(False)
            self.generator_loss = XcodecGeneratorLoss(sampling_rate=self.config.sample_rate)
        super().post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        self.semantic_model.eval()
        return self

    # ----- conversions ---------------------------------------------------------------------------
    @classmethod
    def from_transformers(cls, model: XcodecModel, **config_overrides) -> XcodecTokenizer:
        """A modalzoo X-Codec holding (a copy of) a transformers `XcodecModel`'s weights."""
        config = XcodecTokenizerConfig.from_transformers(model.config, **config_overrides)
        tokenizer = cls(config)
        tokenizer.load_state_dict(model.state_dict())
        return tokenizer.to(model.device).eval()

    def to_transformers(self) -> XcodecModel:
        """A plain transformers `XcodecModel` with (a copy of) these weights."""
        model = XcodecModel(self.config.to_transformers())
        model.load_state_dict(self.state_dict())
        return model.to(self.device).eval()

    def load_teacher(self, teacher: str | nn.Module, **from_pretrained_kwargs) -> XcodecTokenizer:
        """Copies a pretrained HuBERT / WavLM (a model, or a folder / Hub id for `AutoModel`) into
        the frozen teacher, as the original's `AutoModel.from_pretrained(<hub id>)` does before
        training from scratch. Its architecture must equal `config.semantic_model_config`."""
        if not isinstance(teacher, nn.Module):
            from transformers import AutoModel

            teacher = AutoModel.from_pretrained(teacher, **from_pretrained_kwargs)
        state = teacher.state_dict()
        expected = self.semantic_model.state_dict()
        wrong = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
        if wrong or set(state) - set(expected):
            raise ValueError(
                f"the teacher does not fit semantic_model_config ({len(wrong)} missing or mis-shaped keys, e.g. "
                f"{(wrong or sorted(set(state) - set(expected)))[:3]})"
            )
        self.semantic_model.load_state_dict(state)
        return self

    # ----- options --------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def resolve_num_quantizers(self, bandwidth: float | None = None, num_quantizers: int | None = None) -> int:
        """`bandwidth` (kbps, one of `target_bandwidths`, as transformers) or `num_quantizers`
        (1 .. config.num_quantizers); neither means all of them."""
        if bandwidth is not None and num_quantizers is not None:
            raise ValueError("give bandwidth or num_quantizers, not both")
        if bandwidth is not None:
            if float(bandwidth) not in self.config.target_bandwidths:
                raise ValueError(
                    f"bandwidth {bandwidth} kbps is not one of this model's target_bandwidths "
                    f"{self.config.target_bandwidths}; or pass num_quantizers"
                )
            return self.quantizer.get_num_quantizers_for_bandwidth(float(bandwidth))
        if num_quantizers is None:
            return self.config.num_quantizers
        if not 1 <= int(num_quantizers) <= self.config.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.config.num_quantizers}], got {num_quantizers}")
        return int(num_quantizers)

    # ----- encode -----------------------------------------------------------------------------------
    def _frame_lengths(self, padding_mask: torch.Tensor | None, total_frames: int) -> torch.Tensor | None:
        """Frames per item from a sample mask; None when every item fills the batch."""
        if padding_mask is None:
            return None
        lengths = frames_mask(padding_mask, self.hop_length, total_frames).sum(-1)
        if bool((lengths == total_frames).all()):
            return None
        if bool((lengths < 1).any()):
            raise ValueError("every item needs at least one real sample in padding_mask")
        return lengths

    def _teacher_features(self, audio: torch.Tensor, frame_lengths: torch.Tensor | None) -> torch.Tensor:
        """The teacher's hidden states averaged over all layers, `[B, frames, hidden]`."""
        if frame_lengths is None:
            return self._extract_semantic_features(audio)
        padded = F.pad(audio[:, 0], (self.pad, self.pad))
        sample_lengths = frame_lengths * self.hop_length + 2 * self.pad
        attention_mask = (torch.arange(padded.shape[-1], device=padded.device)[None] < sample_lengths[:, None]).long()
        with torch.no_grad(), group_norm_per_item(self.semantic_model.feature_extractor, sample_lengths):
            hidden_states = self.semantic_model(padded, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        return torch.stack(hidden_states, dim=1).mean(dim=1)

    def _fused_embeddings(self, audio: torch.Tensor, frame_lengths: torch.Tensor | None):
        """-> (`fc(acoustic ‖ semantic)` `[B, D, frames]`, teacher features `[B, frames, hidden]`)."""
        teacher = self._teacher_features(audio, frame_lengths)
        if frame_lengths is None:
            # XcodecModel.encode's steps
            e_semantic = self.encoder_semantic(teacher.transpose(1, 2))
            if self._get_conv1d_output_lengths(audio.shape[2], self.acoustic_encoder) != e_semantic.shape[2]:
                e_acoustic = self.acoustic_encoder(F.pad(audio, (self.pad, self.pad)))
            else:
                e_acoustic = self.acoustic_encoder(audio)
        else:
            total_frames = audio.shape[-1] // self.hop_length
            with zero_past_end([self.encoder_semantic, self.acoustic_encoder], frame_lengths, total_frames):
                e_semantic = self.encoder_semantic(teacher.transpose(1, 2))
                e_acoustic = self.acoustic_encoder(audio)
        embeddings = torch.cat([e_acoustic.to(e_semantic.device), e_semantic], dim=1)
        return self.fc(embeddings.transpose(1, 2)).transpose(1, 2), teacher

    def _prepare(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None):
        """Masked audio, padded to whole frames when a mask is given, and its frame lengths."""
        check_audio_input(input_values, padding_mask)
        audio = input_values.to(self.fc.weight.dtype)
        if padding_mask is None:
            return audio, None
        total_frames = -(-audio.shape[-1] // self.hop_length)
        if audio.shape[-1] == total_frames * self.hop_length and bool(padding_mask.bool().all()):
            return audio, None
        audio = audio * padding_mask[:, None].to(audio.dtype)
        audio = F.pad(audio, (0, total_frames * self.hop_length - audio.shape[-1]))
        return audio, self._frame_lengths(padding_mask, total_frames)

    def _encode_codes(self, audio: torch.Tensor, frame_lengths: torch.Tensor | None, num_quantizers: int):
        embeddings, _ = self._fused_embeddings(audio, frame_lengths)
        return self.quantizer.encode_codes(embeddings, num_quantizers)

    @torch.no_grad()
    def encode(
        self,
        input_values: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        bandwidth: float | None = None,
        num_quantizers: int | None = None,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> EncoderOutput:
        """`input_values` `[B, 1, T]` at 16 kHz (+ `padding_mask` `[B, T]`, 1 on real samples)
        -> codes `[B, Q, frames]` and `codes_mask` `[B, frames]` (None without a mask).

        Q is `num_quantizers`, or follows from `bandwidth` (kbps, one of `target_bandwidths`);
        all of them by default. Without a mask the frames are transformers' (50 per second; see
        `XcodecModel.encode`); with one, each item is cut into ceil(length / hop) frames.
        `chunk_length_s` encodes long audio window by window with `chunk_overlap_s` (default
        1 s) of context on both sides: memory bounded by the window, the same frames; codes differ
        from the unchunked ones only where the teacher's attention would have looked further.
        """
        depth = self.resolve_num_quantizers(bandwidth, num_quantizers)
        if chunk_length_s is None:
            audio, frame_lengths = self._prepare(input_values, padding_mask)
            codes = self._encode_codes(audio, frame_lengths, depth)
        else:
            mask = padding_mask if padding_mask is not None else torch.ones_like(input_values[:, 0], dtype=torch.long)
            audio, _ = self._prepare(input_values, mask)
            mask = F.pad(mask.to(audio.dtype), (0, audio.shape[-1] - mask.shape[-1]))
            # The mask travels as a second channel, so each window gets its own slice of it.
            codes = self.chunked_encode(
                lambda window: self._encode_window(window, depth),
                torch.cat([audio, mask[:, None]], dim=1),
                chunk_length_s,
                chunk_overlap_s,
            )
        codes_mask = None if padding_mask is None else frames_mask(padding_mask, self.hop_length, codes.shape[-1])
        return EncoderOutput(codes=codes, codes_mask=codes_mask)

    def _encode_window(self, window: torch.Tensor, depth: int) -> torch.LongTensor:
        audio, mask = window[:, :1], window[:, 1]
        # An item that ended before this window still needs a frame to run; its codes are
        # outside its codes_mask and discarded.
        mask = mask.clone()
        mask[:, 0] = 1
        total_frames = -(-audio.shape[-1] // self.hop_length)
        audio = F.pad(audio, (0, total_frames * self.hop_length - audio.shape[-1]))
        return self._encode_codes(audio, self._frame_lengths(mask, total_frames), depth)

    # ----- decode -----------------------------------------------------------------------------------
    def _synthesize(self, codes: torch.Tensor, frame_lengths: torch.Tensor | None) -> torch.Tensor:
        """Codes `[B, Q, F]` -> audio `[B, 1, F * hop]` (XcodecModel.decode's steps)."""
        # codebooks stay fp32 under half-precision loads (`_keep_in_fp32_modules_strict`)
        quantized = self.quantizer.decode(codes.transpose(0, 1)).to(self.fc2.weight.dtype)
        acoustic = self.fc2(quantized.transpose(1, 2)).transpose(1, 2)
        if frame_lengths is None:
            return self.acoustic_decoder(acoustic)
        with zero_past_end([self.acoustic_decoder], frame_lengths, codes.shape[-1]):
            return self.acoustic_decoder(acoustic)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        chunk_length_s: float | None = None,
        chunk_overlap_s: float | None = None,
    ) -> DecoderOutput:
        """Codes `[B, Q, F]` (Q <= num_quantizers: the first Q stages) -> audio `[B, 1, F * hop]`.

        With `codes_mask` each item is decoded from its own frames (codes past its end are
        ignored, whatever they hold) and `values_mask` marks its samples; padding is zero.
        `chunk_length_s` / `chunk_overlap_s` as in `encode`; the decoder is convolutional, so
        with the default 1 s of context chunked output equals the unchunked output.
        """
        if codes_mask is not None:
            codes = torch.as_tensor(codes)
            if tuple(codes_mask.shape) != (codes.shape[0], codes.shape[-1]):
                raise ValueError(
                    f"codes_mask must be [batch, frames] = {(codes.shape[0], codes.shape[-1])}, got {tuple(codes_mask.shape)}"
                )
            codes = codes.masked_fill(~codes_mask.bool()[:, None].to(codes.device), 0)
        codes = self.check_codes(codes)
        frame_lengths = None
        if codes_mask is not None:
            lengths = codes_mask.bool().sum(-1).to(codes.device)
            if bool((lengths < 1).any()):
                raise ValueError("every item needs at least one real frame in codes_mask")
            frame_lengths = None if bool((lengths == codes.shape[-1]).all()) else lengths
        if chunk_length_s is None:
            values = self._synthesize(codes, frame_lengths)
        else:
            lengths = torch.full((codes.shape[0],), codes.shape[-1], device=codes.device) if frame_lengths is None else frame_lengths
            rows = (torch.arange(codes.shape[-1], device=codes.device)[None] < lengths[:, None]).long()
            # The frame mask travels as an extra codebook row, so each window gets its slice.
            values = self.chunked_decode(
                self._decode_window, torch.cat([codes, rows[:, None]], dim=1), chunk_length_s, chunk_overlap_s
            )
        values_mask = None
        if codes_mask is not None:
            values_mask = codes_mask.bool().to(values.device).repeat_interleave(self.hop_length, dim=-1)
            values = values * values_mask[:, None].to(values.dtype)
        return DecoderOutput(values=values, values_mask=values_mask)

    def _decode_window(self, window: torch.Tensor) -> torch.Tensor:
        codes, rows = window[:, :-1], window[:, -1].clone()
        rows[:, 0] = 1
        lengths = rows.sum(-1)
        return self._synthesize(codes, None if bool((lengths == codes.shape[-1]).all()) else lengths)

    # ----- training ---------------------------------------------------------------------------------
    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bandwidth: float | None = None,
        num_quantizers: int | None = None,
        discriminator: nn.Module | None = None,
    ) -> TokenizerOutput:
        """Encode, quantise (EMA codebook updates in training) and decode, as the original's
        training step. In training, with neither `bandwidth` nor `num_quantizers`, one of
        `target_bandwidths` is drawn per step, as the original does.

        Terms: `stft` (full-band multi-resolution STFT: spectral convergence + log magnitude),
        `subband_stft` (the same on 6 PQMF bands), `commitment`, `semantic` (MSE of the
        semantic decoder's output against the teacher features); `loss` weights them with
        `config.loss_weights` (the original's 1, 1, 1, 100). With a `discriminator` (e.g.
        `MultiFrequencyDiscriminator`), also `adversarial` (MSE-GAN) and `feature_matching`
        (L1, weight 20); otherwise those belong to the trainer.
        """
        if bandwidth is None and num_quantizers is None and self.training:
            bandwidth = self.config.target_bandwidths[int(torch.randint(len(self.config.target_bandwidths), ()))]
        depth = self.resolve_num_quantizers(bandwidth, num_quantizers)
        length = input_values.shape[-1]
        mask = padding_mask if padding_mask is not None else torch.ones_like(input_values[:, 0], dtype=torch.long)
        audio, frame_lengths = self._prepare(input_values, mask)
        total_frames = audio.shape[-1] // self.hop_length
        frame_mask = frames_mask(mask, self.hop_length, total_frames)

        embeddings, teacher = self._fused_embeddings(audio, frame_lengths)
        quantized = self.quantizer(embeddings.transpose(1, 2), depth, frame_mask)
        to_semantic = self.fc1(quantized.quantized).transpose(1, 2)
        to_acoustic = self.fc2(quantized.quantized).transpose(1, 2)
        decoders = [self.decoder_semantic, self.acoustic_decoder]
        with zero_past_end(decoders, frame_lengths, total_frames) if frame_lengths is not None else contextlib.nullcontext():
            semantic = self.decoder_semantic(to_semantic)
            values = self.acoustic_decoder(to_acoustic)
        values = values[..., :length] * mask[:, None].to(values.dtype)
        target = audio[..., :length]

        losses = dict(self.generator_loss(values, target))
        losses["commitment"] = quantized.loss
        losses["semantic"] = semantic_reconstruction_loss(semantic, teacher.transpose(1, 2), frame_mask)
        if discriminator is not None:
            fake_logits, fake_features = discriminator(values)
            with torch.no_grad():
                _, real_features = discriminator(target)
            losses["adversarial"] = mse_generator_loss(fake_logits)
            losses["feature_matching"] = feature_matching_loss(real_features, fake_features)
        weights = self.config.loss_weights
        loss = sum(weights[name] * term for name, term in losses.items())
        return TokenizerOutput(loss=loss, losses=losses, codes=quantized.codes, values=values)
