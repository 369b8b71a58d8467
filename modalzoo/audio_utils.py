"""Helpers shared by the audio codecs: input checks, sample -> frame masks, and chunked
encode / decode of long inputs (`ChunkedCodecMixin`).

Chunking cuts the signal at frame boundaries into windows of `chunk_length_s`, gives each window
`chunk_overlap_s` of context on both sides, runs the codec on the window with its context and
keeps only the window's own frames (overlap-discard, as overlap-save filtering does). Frame and
sample counts therefore equal the unchunked result exactly; values differ from it only where a
frame's receptive field reaches past its context (non-causal encoders, attention decoders).
Memory is bounded by the window plus context instead of the whole signal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def check_audio_input(input_values: torch.Tensor, padding_mask: torch.Tensor | None, channels: int = 1) -> None:
    if not torch.is_tensor(input_values) or input_values.ndim != 3 or input_values.shape[1] != channels:
        shape = tuple(input_values.shape) if torch.is_tensor(input_values) else type(input_values).__name__
        raise ValueError(
            f"input_values must be [batch, {channels}, samples] (use the model's feature extractor), got {shape}"
        )
    if not input_values.is_floating_point():
        raise ValueError(f"input_values must be floating point, got dtype {input_values.dtype}")
    if input_values.shape[-1] == 0:
        raise ValueError("input_values is empty")
    if padding_mask is not None and tuple(padding_mask.shape) != (input_values.shape[0], input_values.shape[-1]):
        raise ValueError(
            f"padding_mask must be [batch, samples] = {(input_values.shape[0], input_values.shape[-1])}, "
            f"got {tuple(padding_mask.shape)}"
        )


def num_frames(num_samples: int, hop_length: int) -> int:
    return -(-num_samples // hop_length)


def frames_mask(padding_mask: torch.Tensor, hop_length: int, frames: int) -> torch.BoolTensor:
    """`[B, samples]` sample mask -> `[B, frames]` frame mask; a frame is real when it holds at
    least one real sample (real samples are assumed to form a prefix)."""
    frame_lengths = (padding_mask.long().sum(-1) + hop_length - 1) // hop_length
    return torch.arange(frames, device=padding_mask.device)[None] < frame_lengths[:, None]


def lengths_from_mask(mask: torch.Tensor | None, batch_size: int, length: int) -> list[int]:
    if mask is None:
        return [length] * batch_size
    return [int(n) for n in mask.long().sum(-1).tolist()]


def _windows(total_frames: int, chunk_frames: int, context_frames: int):
    for start in range(0, total_frames, chunk_frames):
        end = min(total_frames, start + chunk_frames)
        yield start, end, max(0, start - context_frames), min(total_frames, end + context_frames)


def chunked_encode(
    encode_fn: Callable[[torch.Tensor], torch.Tensor],
    input_values: torch.Tensor,
    *,
    hop_length: int,
    chunk_frames: int,
    context_frames: int,
) -> torch.Tensor:
    """Runs `encode_fn` (`[B, C, samples]` -> codes `[B, Q, ceil(samples / hop)]`) window by
    window and returns codes for the whole input, `[B, Q, ceil(samples / hop)]`."""
    total_samples = input_values.shape[-1]
    total_frames = num_frames(total_samples, hop_length)
    pieces = []
    for start, end, context_start, context_end in _windows(total_frames, chunk_frames, context_frames):
        segment = input_values[..., context_start * hop_length : min(total_samples, context_end * hop_length)]
        codes = encode_fn(segment)
        if codes.shape[-1] != context_end - context_start:
            raise RuntimeError(
                f"encode_fn returned {codes.shape[-1]} frames for {segment.shape[-1]} samples; "
                f"expected ceil(samples / {hop_length}) = {context_end - context_start}"
            )
        pieces.append(codes[..., start - context_start : end - context_start])
    return torch.cat(pieces, dim=-1)


def chunked_decode(
    decode_fn: Callable[[torch.Tensor], torch.Tensor],
    codes: torch.Tensor,
    *,
    hop_length: int,
    chunk_frames: int,
    context_frames: int,
) -> torch.Tensor:
    """Runs `decode_fn` (codes `[B, Q, F]` -> `[B, C, F * hop]`) window by window and returns
    `[B, C, frames * hop]` for all of `codes`."""
    pieces = []
    for start, end, context_start, context_end in _windows(codes.shape[-1], chunk_frames, context_frames):
        values = decode_fn(codes[..., context_start:context_end])
        if values.shape[-1] != (context_end - context_start) * hop_length:
            raise RuntimeError(
                f"decode_fn returned {values.shape[-1]} samples for {context_end - context_start} frames; "
                f"expected frames * {hop_length}"
            )
        pieces.append(values[..., (start - context_start) * hop_length : (end - context_start) * hop_length])
    return torch.cat(pieces, dim=-1)


class ChunkedCodecMixin:
    """For codecs with a fixed hop: turns `chunk_length_s` / `chunk_overlap_s` keywords into
    frame counts and runs the chunked loops under `torch.no_grad()` (chunking is an inference
    path; a graph over every chunk would defeat the bounded memory).

    The host class provides `config.sampling_rate` and `config.hop_length`.
    """

    default_chunk_overlap_s: float = 1.0

    def _chunk_frames(self, chunk_length_s: float, chunk_overlap_s: float | None) -> tuple[int, int]:
        overlap = self.default_chunk_overlap_s if chunk_overlap_s is None else chunk_overlap_s
        if not chunk_length_s > 0:
            raise ValueError(f"chunk_length_s must be positive, got {chunk_length_s}")
        if overlap < 0:
            raise ValueError(f"chunk_overlap_s must be >= 0, got {overlap}")
        frames_per_second = self.config.sampling_rate / self.config.hop_length
        chunk_frames = max(1, round(chunk_length_s * frames_per_second))
        context_frames = math.ceil(overlap * frames_per_second)
        return chunk_frames, context_frames

    def chunked_encode(self, encode_fn, input_values, chunk_length_s, chunk_overlap_s=None) -> torch.Tensor:
        chunk_frames, context_frames = self._chunk_frames(chunk_length_s, chunk_overlap_s)
        with torch.no_grad():
            return chunked_encode(
                encode_fn, input_values, hop_length=self.config.hop_length,
                chunk_frames=chunk_frames, context_frames=context_frames,
            )

    def chunked_decode(self, decode_fn, codes, chunk_length_s, chunk_overlap_s=None) -> torch.Tensor:
        chunk_frames, context_frames = self._chunk_frames(chunk_length_s, chunk_overlap_s)
        with torch.no_grad():
            return chunked_decode(
                decode_fn, codes, hop_length=self.config.hop_length,
                chunk_frames=chunk_frames, context_frames=context_frames,
            )

    def decode_each_item(self, codes: torch.Tensor, codes_mask: torch.Tensor, decode_group) -> tuple[torch.Tensor, torch.Tensor]:
        """Decodes every item from its own frames only: items of equal length run together through
        `decode_group(items, codes[items, :, :length])` (for decoders whose normalisation or
        attention spans the sequence, where padding would change every frame). Returns `values`,
        zero past each item's end, and `values_mask`."""
        if tuple(codes_mask.shape) != (codes.shape[0], codes.shape[-1]):
            raise ValueError(f"codes_mask must be [batch, frames] = {(codes.shape[0], codes.shape[-1])}, got {tuple(codes_mask.shape)}")
        lengths = lengths_from_mask(codes_mask, codes.shape[0], codes.shape[-1])
        if min(lengths) < 1:
            raise ValueError("every item needs at least one real frame in codes_mask")
        hop_length = self.config.hop_length
        values = None
        for length in sorted(set(lengths)):
            items = torch.tensor([i for i, n in enumerate(lengths) if n == length], device=codes.device)
            group = decode_group(items, codes[items, :, :length])
            if values is None:
                values = group.new_zeros(codes.shape[0], group.shape[1], codes.shape[-1] * hop_length)
            values[items, :, : group.shape[-1]] = group
        return values, codes_mask.bool().repeat_interleave(hop_length, dim=-1)
