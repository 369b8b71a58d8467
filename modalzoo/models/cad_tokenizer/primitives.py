"""Which primitive each token belongs to: the groups the encoder pools into one code each.

The assignment is causal (a token's primitive depends only on the tokens up to it), so the
decoder can follow it while it generates. Structural tokens (LOOP_END, FACE_END, SKETCH_END)
belong to the curve before them and EOS to the last extrusion.

With `split_circles`, a circle (CIRCLE and its four extreme points: left, right, top, bottom)
takes two codes: CIRCLE + the left point, then the other three points, which given the left
point only carry the radius. A circle's centre and radius are ~18 bits, more than one 11-bit
code; each half is about as much as a line's end point.
"""

from __future__ import annotations

import torch

from .grammar import ARC, CIRCLE, EXTRUDE_END, FACE_END, LINE, LOOP_END, OPERATION_TOKENS

# first offset (from the operation token) of each extrude parameter group: operation + extent,
# plane origin + axes, scale, offset (+ EXTRUDE_END)
PARAMETER_GROUP_STARTS = (0, 3, 15, 16)
# offset (from CIRCLE) of the second code of a split circle: the left point is values 1-2
CIRCLE_SPLIT_OFFSET = 3


def _since_last(mask: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of the last True at or before each position (-1 if none) and the distance to it."""
    last = torch.where(mask, positions, torch.full_like(positions, -1)).cummax(dim=1).values
    return last, positions - last


def primitive_starts(tokens: torch.Tensor, pooling: str, extrude_pooling: str, split_circles: bool = False) -> torch.BoolTensor:
    """`[B, L]` token ids (no BOS) -> True where a new primitive begins."""
    batch, length = tokens.shape
    positions = torch.arange(length, device=tokens.device).expand(batch, length)
    is_operation = torch.zeros_like(tokens, dtype=torch.bool)
    for token in OPERATION_TOKENS:
        is_operation |= tokens == token
    last_operation, since_operation = _since_last(is_operation, positions)
    is_curve = (tokens == LINE) | (tokens == ARC) | (tokens == CIRCLE)
    previous = torch.cat([torch.full_like(tokens[:, :1], EXTRUDE_END), tokens[:, :-1]], dim=1)
    if pooling == "single":  # a pair starts with the first curve after an extrusion (or at 0)
        return is_curve & (previous == EXTRUDE_END)
    in_extrude = (last_operation >= 0) & (since_operation <= 18) & ~is_curve
    groups = PARAMETER_GROUP_STARTS if extrude_pooling == "parameter_groups" else (0,)
    extrude_start = torch.zeros_like(is_curve)
    for offset in groups:
        extrude_start |= in_extrude & (since_operation == offset)
    if pooling == "loop":
        loop_start = is_curve & ((previous == LOOP_END) | (previous == FACE_END) | (previous == EXTRUDE_END))
        return loop_start | extrude_start
    starts = is_curve | extrude_start
    if split_circles:
        last_curve, _ = _since_last(is_curve, positions)
        last_circle, since_circle = _since_last(tokens == CIRCLE, positions)
        starts |= (last_circle >= 0) & (last_curve == last_circle) & (since_circle == CIRCLE_SPLIT_OFFSET)
    return starts


def primitive_ids(tokens: torch.Tensor, mask: torch.Tensor | None, pooling: str, extrude_pooling: str,
                  split_circles: bool = False) -> torch.LongTensor:
    """`[B, L]` primitive index of each token (0-based); -1 on padding."""
    return primitive_ids_and_offsets(tokens, mask, pooling, extrude_pooling, split_circles)[0]


def primitive_ids_and_offsets(tokens: torch.Tensor, mask: torch.Tensor | None, pooling: str, extrude_pooling: str,
                              split_circles: bool = False) -> tuple[torch.LongTensor, torch.LongTensor]:
    """`[B, L]` primitive index of each token (0-based; -1 on padding) and its offset from the
    primitive's first token (0 on padding)."""
    starts = primitive_starts(tokens, pooling, extrude_pooling, split_circles)
    ids = starts.long().cumsum(dim=1) - 1
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    offsets = _since_last(starts, positions)[1]
    if mask is not None:
        ids = ids.masked_fill(~mask.bool(), -1)
        offsets = offsets.masked_fill(~mask.bool(), 0)
    return ids, offsets
