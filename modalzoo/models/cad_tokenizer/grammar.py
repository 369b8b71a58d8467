"""The CAD token vocabulary and the finite-state automaton of its grammar.

Token ids (for a `bits`-bit grid):

    0 PAD  1 BOS  2 EOS  3 LINE  4 ARC  5 CIRCLE  6 LOOP_END  7 FACE_END  8 SKETCH_END
    9 ADD  10 CUT  11 INTERSECT  12 EXTRUDE_END  13-15 AXIS -1 / 0 / +1  16.. VALUE 0..2**bits-1

A sequence is `(sketch SKETCH_END extrude)+ EOS` with

    sketch  := (face FACE_END)+        face := (loop LOOP_END)+
    loop    := CIRCLE v*8 | ((LINE v*2 | ARC v*4) ){2,}
    extrude := (ADD|CUT|INTERSECT) v v  v v v  a*9  v  v v  EXTRUDE_END

(v: a value token, a: an axis token). The automaton tracks the grammar state over token *types*;
`mask` gives the tokens allowed next, also refusing any token after which the sequence could not
be finished within `max_length` tokens, so a constrained decode always parses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

PAD, BOS, EOS, LINE, ARC, CIRCLE, LOOP_END, FACE_END, SKETCH_END, ADD, CUT, INTERSECT, EXTRUDE_END = range(13)
AXIS_BASE = 13  # AXIS_BASE + axis value + 1
VALUE_BASE = 16
CURVE_TOKENS = {LINE: "line", ARC: "arc", CIRCLE: "circle"}
CURVE_VALUES = {LINE: 2, ARC: 4, CIRCLE: 8}
OPERATION_TOKENS = {ADD: "add", CUT: "cut", INTERSECT: "intersect"}
# the 17 extrude numbers: extent 2, origin 3, axes 9, scale 1, offset 2 ("a" = axis token)
EXTRUDE_LAYOUT = "vv" + "vvv" + "a" * 9 + "v" + "vv"
EXTRUDE_LENGTH = 1 + len(EXTRUDE_LAYOUT) + 1  # operation, numbers, EXTRUDE_END
SPECIAL_NAMES = ("PAD", "BOS", "EOS", "LINE", "ARC", "CIRCLE", "LOOP_END", "FACE_END", "SKETCH_END",
                 "ADD", "CUT", "INTERSECT", "EXTRUDE_END", "AXIS_NEG", "AXIS_ZERO", "AXIS_POS")


def vocab_size(bits: int) -> int:
    return VALUE_BASE + 2**bits


def value_token(value: int) -> int:
    return VALUE_BASE + int(value)


def axis_token(value: int) -> int:
    return AXIS_BASE + int(value) + 1


@dataclass(frozen=True)
class State:
    """Where the automaton is. `phase`: 'pair' (a sketch or EOS may start), 'curve' (inside a
    curve's values), 'loop' (after a complete curve), 'loop_end', 'face_end', 'sketch_end',
    'extrude' (inside the extrude's numbers), 'done'."""

    phase: str = "pair"
    remaining: int = 0  # values left in the current curve / numbers left in the extrude
    loop_curves: int = 0
    loop_circle: bool = False
    pairs: int = 0


# the fewest tokens that finish a sequence from each phase (a pair needs >= 2 lines: 6 tokens)
_CLOSE_PAIR = 3 + EXTRUDE_LENGTH + 1  # LOOP_END FACE_END SKETCH_END extrude EOS


class Grammar:
    """The automaton for one vocabulary (`bits`-bit values)."""

    def __init__(self, bits: int = 6):
        self.bits = bits
        self.vocab_size = vocab_size(bits)
        value_ids = torch.arange(VALUE_BASE, self.vocab_size, device="cpu")
        axis_ids = torch.arange(AXIS_BASE, VALUE_BASE, device="cpu")
        self._value_mask = torch.zeros(self.vocab_size, dtype=torch.bool, device="cpu")
        self._value_mask[value_ids] = True
        self._axis_mask = torch.zeros(self.vocab_size, dtype=torch.bool, device="cpu")
        self._axis_mask[axis_ids] = True

    # ----- transitions --------------------------------------------------------------------------
    def step(self, state: State, token: int) -> State | None:
        """The next state, or None when `token` is not allowed in `state`."""
        phase = state.phase
        is_value = VALUE_BASE <= token < self.vocab_size
        is_axis = AXIS_BASE <= token < VALUE_BASE
        if phase == "curve":
            if not is_value:
                return None
            left = state.remaining - 1
            return replace(state, phase="curve" if left else "loop", remaining=left)
        if phase == "extrude":
            expected = EXTRUDE_LAYOUT[len(EXTRUDE_LAYOUT) - state.remaining] if state.remaining else None
            if expected is None:
                return replace(state, phase="pair", pairs=state.pairs + 1) if token == EXTRUDE_END else None
            if (expected == "v" and is_value) or (expected == "a" and is_axis):
                return replace(state, remaining=state.remaining - 1)
            return None
        if token in CURVE_TOKENS:
            starts_loop = phase in ("pair", "loop_end", "face_end")
            if starts_loop:
                return State("curve", CURVE_VALUES[token], 1, token == CIRCLE, state.pairs)
            if phase == "loop" and not state.loop_circle and token != CIRCLE:
                return State("curve", CURVE_VALUES[token], state.loop_curves + 1, False, state.pairs)
            return None
        closes_loop = phase == "loop" and (state.loop_circle or state.loop_curves >= 2)
        if token == LOOP_END and closes_loop:
            return replace(state, phase="loop_end")
        if token == FACE_END and phase == "loop_end":
            return replace(state, phase="face_end")
        if token == SKETCH_END and phase == "face_end":
            return replace(state, phase="sketch_end")
        if token in OPERATION_TOKENS and phase == "sketch_end":
            return replace(state, phase="extrude", remaining=len(EXTRUDE_LAYOUT))
        if token == EOS and phase == "pair" and state.pairs > 0:
            return replace(state, phase="done")
        return None

    def tokens_to_finish(self, state: State) -> int:
        """The fewest tokens that complete a grammatical sequence from `state`."""
        phase = state.phase
        if phase == "done":
            return 0
        if phase == "pair":
            return 1 if state.pairs else 6 + _CLOSE_PAIR
        if phase == "extrude":
            return state.remaining + 2
        if phase == "sketch_end":
            return EXTRUDE_LENGTH + 1
        if phase == "face_end":
            return 1 + EXTRUDE_LENGTH + 1
        if phase == "loop_end":
            return 2 + EXTRUDE_LENGTH + 1
        curves_after = state.loop_curves
        extra = 0 if state.loop_circle or curves_after >= 2 else 3 * (2 - curves_after)
        return (state.remaining if phase == "curve" else 0) + extra + _CLOSE_PAIR

    # ----- masks ------------------------------------------------------------------------------------
    def _candidates(self, state: State) -> list[int]:
        """One representative token per type (all value / axis tokens share transitions)."""
        return [EOS, LINE, ARC, CIRCLE, LOOP_END, FACE_END, SKETCH_END, ADD, CUT, INTERSECT, EXTRUDE_END, AXIS_BASE, VALUE_BASE]

    def mask(self, state: State, length: int, max_length: int) -> torch.BoolTensor:
        """Allowed next tokens after `length` tokens, so that the sequence can end by `max_length`."""
        allowed = torch.zeros(self.vocab_size, dtype=torch.bool, device="cpu")
        for token in self._candidates(state):
            following = self.step(state, token)
            if following is None or length + 1 + self.tokens_to_finish(following) > max_length:
                continue
            if token == VALUE_BASE:
                allowed |= self._value_mask
            elif token == AXIS_BASE:
                allowed |= self._axis_mask
            else:
                allowed[token] = True
        return allowed

    def accepts(self, tokens) -> bool:
        """True when `tokens` (without BOS/PAD) is a complete grammatical sequence."""
        state = State()
        for token in tokens:
            state = self.step(state, int(token))
            if state is None:
                return False
        return state.phase == "done"
