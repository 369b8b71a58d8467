"""Pure arithmetic between modality codes and LLM token ids.

Nothing here knows about text tokenizers or models: a modality tokenizer's codes occupy one
contiguous id block, codebook after codebook (`CodeBlockLayout`), and an item becomes a *span*

    <begin> <shape header> <code ids, position-major> <end>

where the shape header spells the grid size (`H x W`), the token count or the frame count with
ten digit tokens, a `x` separator and a header terminator (`NumberTokens`). Multi-codebook codes
are flattened position-major (frame-major for audio): all codebooks of position 0, then of
position 1, ..., as AnyGPT does; each codebook keeps its own id block, so the codebook of every id
is known and a span can be read back without knowing how many codebooks the encoder used.

Every conversion is tensor arithmetic over whole batches; only span boundaries and the few
header tokens are handled in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SPAN_KINDS = ("grid", "sequence", "frames")


class SpanError(ValueError):
    """Ids that do not form a readable modality span (truncated, malformed, out of vocabulary)."""


def _as_long_tensor(values, what: str) -> torch.Tensor:
    tensor = values if torch.is_tensor(values) else torch.as_tensor(values)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise SpanError(f"{what} must be integers, got dtype {tensor.dtype}")
    return tensor.long()


@dataclass(frozen=True)
class CodeBlockLayout:
    """Ids of one modality tokenizer: codebook q owns `[offsets[q], offsets[q] + codebook_sizes[q])`,
    the blocks back to back from `start`."""

    codebook_sizes: tuple[int, ...]
    start: int

    def __post_init__(self):
        sizes = tuple(int(size) for size in self.codebook_sizes)
        if not sizes:
            raise ValueError("a code block needs at least one codebook (continuous tokenizers have no codes)")
        if any(size < 1 for size in sizes):
            raise ValueError(f"codebook sizes must be positive, got {sizes}")
        if int(self.start) < 0:
            raise ValueError(f"start must be a non-negative id, got {self.start}")
        object.__setattr__(self, "codebook_sizes", sizes)
        object.__setattr__(self, "start", int(self.start))

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def size(self) -> int:
        return sum(self.codebook_sizes)

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def offsets(self) -> tuple[int, ...]:
        offsets, running = [], self.start
        for size in self.codebook_sizes:
            offsets.append(running)
            running += size
        return tuple(offsets)

    def _columns(self, num_codebooks: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets and sizes of the first `num_codebooks` codebooks as `[Q', 1]` columns."""
        offsets = torch.tensor(self.offsets[:num_codebooks], dtype=torch.long, device=device).view(-1, 1)
        sizes = torch.tensor(self.codebook_sizes[:num_codebooks], dtype=torch.long, device=device).view(-1, 1)
        return offsets, sizes

    def _check_num_codebooks(self, num_codebooks: int) -> None:
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise SpanError(f"expected 1 to {self.num_codebooks} codebooks, got {num_codebooks}")

    def codes_to_ids(self, codes) -> torch.LongTensor:
        """codes `[..., Q', T]` (the first Q' <= Q codebooks) -> ids `[..., T * Q']`, position-major."""
        codes = _as_long_tensor(codes, "codes")
        if codes.ndim < 2:
            raise SpanError(f"codes must be [..., codebooks, positions], got shape {tuple(codes.shape)}")
        num_codebooks = codes.shape[-2]
        self._check_num_codebooks(num_codebooks)
        offsets, sizes = self._columns(num_codebooks, codes.device)
        self._check_range(codes, sizes, lambda index: (
            f"code {int(codes[index])} at index {index} is out of range for codebook {index[-2]} "
            f"(size {self.codebook_sizes[index[-2]]})"
        ))
        # position-major: write the transposed sum straight into a contiguous [..., T, Q'] buffer
        ids = torch.empty((*codes.shape[:-2], codes.shape[-1], num_codebooks), dtype=torch.long, device=codes.device)
        torch.add(codes.transpose(-1, -2), offsets.view(1, -1), out=ids)
        return ids.view(*codes.shape[:-2], -1)

    @staticmethod
    def _check_range(codes: torch.Tensor, sizes: torch.Tensor, message) -> None:
        """Raises `SpanError(message(first bad index))` unless `0 <= codes[..., q, :] < sizes[q]`.
        Min/max reductions first: much cheaper than materialising a mask on the happy path."""
        if codes.numel() == 0:
            return
        low, high = torch.aminmax(codes, dim=-1)
        if bool((low < 0).any()) or bool((high >= sizes.view(-1)).any()):
            bad = (codes < 0) | (codes >= sizes)
            raise SpanError(message(tuple(int(i) for i in bad.nonzero()[0])))

    def ids_to_codes(self, ids, num_codebooks: int = 1) -> torch.LongTensor:
        """ids `[..., T * Q']` (position-major, as `codes_to_ids` writes them) -> codes `[..., Q', T]`.

        Raises `SpanError` naming the first id that is not a code of the codebook its slot belongs to.
        """
        ids = _as_long_tensor(ids, "ids")
        self._check_num_codebooks(num_codebooks)
        if ids.ndim < 1 or ids.shape[-1] % num_codebooks:
            raise SpanError(f"{ids.shape[-1] if ids.ndim else 0} ids do not split into {num_codebooks} codebooks")
        positions = ids.shape[-1] // num_codebooks
        offsets, sizes = self._columns(num_codebooks, ids.device)
        codes = ids.reshape(*ids.shape[:-1], positions, num_codebooks).transpose(-1, -2) - offsets

        def message(index) -> str:
            *lead, codebook, position = index
            slot = position * num_codebooks + codebook
            return (
                f"id {int(ids[(*lead, slot)])} at code position {slot} is not a code of codebook {codebook} "
                f"(ids {self.offsets[codebook]}..{self.offsets[codebook] + self.codebook_sizes[codebook] - 1})"
            )

        self._check_range(codes, sizes, message)
        return codes

    def contains(self, ids) -> torch.BoolTensor:
        ids = _as_long_tensor(ids, "ids")
        return (ids >= self.start) & (ids < self.stop)


@dataclass(frozen=True)
class NumberTokens:
    """Shape headers: non-negative integers written with ten digit tokens, several integers
    separated by `times_id` (`8 x 8`), the header closed by `end_id`."""

    digit_ids: tuple[int, ...]
    times_id: int
    end_id: int
    max_digits: int = 12

    def __post_init__(self):
        digits = tuple(int(i) for i in self.digit_ids)
        if len(digits) != 10:
            raise ValueError(f"need ten digit ids, got {len(digits)}")
        if len(set(digits) | {int(self.times_id), int(self.end_id)}) != 12:
            raise ValueError("digit, separator and terminator ids must be distinct")
        object.__setattr__(self, "digit_ids", digits)

    def encode(self, numbers: Sequence[int]) -> list[int]:
        ids: list[int] = []
        for index, number in enumerate(numbers):
            number = int(number)
            if number < 0:
                raise SpanError(f"header numbers must be non-negative, got {number}")
            if index:
                ids.append(self.times_id)
            ids.extend(self.digit_ids[int(d)] for d in str(number))
        ids.append(self.end_id)
        return ids

    def parse(self, ids: Sequence[int], count: int) -> tuple[tuple[int, ...], int]:
        """Reads `count` integers from the start of `ids`; returns them and the ids consumed
        (terminator included)."""
        digit_value = {token: value for value, token in enumerate(self.digit_ids)}
        numbers: list[int] = []
        digits = ""
        limit = count * (self.max_digits + 1)
        for position, token in enumerate(ids[:limit]):
            token = int(token)
            if token in digit_value:
                digits += str(digit_value[token])
                if len(digits) > self.max_digits:
                    raise SpanError(f"shape header number has more than {self.max_digits} digits")
                continue
            if token not in (self.times_id, self.end_id):
                raise SpanError(f"unexpected id {token} in the shape header at offset {position}")
            if not digits:
                raise SpanError(f"empty number in the shape header at offset {position}")
            numbers.append(int(digits))
            digits = ""
            if token == self.end_id:
                if len(numbers) != count:
                    raise SpanError(f"shape header has {len(numbers)} numbers, expected {count}")
                return tuple(numbers), position + 1
            if len(numbers) == count:
                raise SpanError(f"shape header has more than {count} numbers")
        raise SpanError("shape header is not terminated")


@dataclass(frozen=True)
class ParsedSpan:
    """A span read back: `dims` from its header and `codes` `[Q', T]` with T = prod(dims)."""

    dims: tuple[int, ...]
    codes: torch.LongTensor


@dataclass(frozen=True)
class SpanLayout:
    """How one modality tokenizer's items are written into an id sequence.

    kind: "grid" (2-D positions, header `H x W`), "sequence" (1-D tokens, header = token count)
    or "frames" (time frames, header = frame count).
    """

    kind: str
    begin_id: int
    end_id: int
    block: CodeBlockLayout
    numbers: NumberTokens

    def __post_init__(self):
        if self.kind not in SPAN_KINDS:
            raise ValueError(f"kind must be one of {SPAN_KINDS}, got {self.kind!r}")

    @property
    def num_dims(self) -> int:
        return 2 if self.kind == "grid" else 1

    def span_ids(self, codes, dims: Sequence[int] | None = None) -> torch.LongTensor:
        """One item's codes `[Q', T]` -> its span ids (1-D). `dims` is `(H, W)` for grids
        (required) and defaults to `(T,)` otherwise."""
        codes = _as_long_tensor(codes, "codes")
        if codes.ndim != 2:
            raise SpanError(f"one item's codes must be [codebooks, positions], got shape {tuple(codes.shape)}")
        positions = codes.shape[-1]
        dims = tuple(int(d) for d in (dims if dims is not None else (positions,)))
        if len(dims) != self.num_dims:
            raise SpanError(f"a {self.kind} span needs {self.num_dims} dims, got {dims}")
        if positions < 1 or math.prod(dims) != positions:
            raise SpanError(f"{positions} positions do not fill a {self.kind} of {' x '.join(map(str, dims))}")
        header = torch.tensor([self.begin_id, *self.numbers.encode(dims)], dtype=torch.long, device=codes.device)
        end = torch.tensor([self.end_id], dtype=torch.long, device=codes.device)
        return torch.cat([header, self.block.codes_to_ids(codes), end])

    def parse(self, ids) -> ParsedSpan:
        """Span ids (begin marker first, end marker last) -> `ParsedSpan`; `SpanError` says what
        is wrong with a truncated or malformed span."""
        ids = _as_long_tensor(ids, "ids").flatten()
        if ids.numel() == 0 or int(ids[0]) != self.begin_id:
            raise SpanError("span does not start with its begin marker")
        header = ids[1 : 1 + self.num_dims * (self.numbers.max_digits + 1)].tolist()
        try:
            dims, consumed = self.numbers.parse(header, self.num_dims)
        except SpanError as error:
            if ids.numel() - 1 <= len(header) and int(ids[-1]) != self.end_id:
                raise SpanError(f"truncated inside the shape header ({error})") from None
            raise
        expected = math.prod(dims)
        if expected < 1:
            raise SpanError(f"shape header {' x '.join(map(str, dims))} has no positions")
        body = ids[1 + consumed :]
        if body.numel() == 0 or int(body[-1]) != self.end_id:
            raise SpanError(
                f"truncated: no end marker after {body.numel()} code ids "
                f"(header announces {' x '.join(map(str, dims))} positions)"
            )
        body = body[:-1]
        if body.numel() == 0 or body.numel() % expected:
            raise SpanError(
                f"{body.numel()} code ids do not fill {' x '.join(map(str, dims))} positions "
                f"with a whole number of codebooks"
            )
        num_codebooks = body.numel() // expected
        if num_codebooks > self.block.num_codebooks:
            raise SpanError(
                f"{body.numel()} code ids for {expected} positions means {num_codebooks} codebooks; "
                f"this tokenizer has {self.block.num_codebooks}"
            )
        return ParsedSpan(dims=dims, codes=self.block.ids_to_codes(body, num_codebooks))


@dataclass(frozen=True)
class SpanLocation:
    """Where a span sits in a sequence: ids `[start, stop)`, for layout number `layout`.
    `complete` is False when no matching end marker closes it; `problem` explains spans that
    cannot be parsed at all (a stray or mismatched end marker)."""

    layout: int
    start: int
    stop: int
    complete: bool
    problem: str | None = None


def locate_spans(ids, begin_ids: Sequence[int], end_ids: Sequence[int]) -> list[SpanLocation]:
    """Finds every span of a 1-D id sequence. Marker positions are found with one tensor op; the
    Python loop runs over markers only (two per span), never over code ids."""
    ids = _as_long_tensor(ids, "ids").flatten()
    begin_of = {int(token): index for index, token in enumerate(begin_ids)}
    end_of = {int(token): index for index, token in enumerate(end_ids)}
    markers = torch.tensor(sorted(begin_of) + sorted(end_of), dtype=torch.long, device=ids.device)
    positions = torch.isin(ids, markers).nonzero().flatten().tolist()
    tokens = ids[positions].tolist() if positions else []

    spans: list[SpanLocation] = []
    open_layout, open_start = None, 0
    for position, token in zip(positions, tokens):
        if token in begin_of:
            if open_layout is not None:
                spans.append(SpanLocation(open_layout, open_start, position, complete=False))
            open_layout, open_start = begin_of[token], position
        elif open_layout is None:
            spans.append(
                SpanLocation(end_of[token], position, position + 1, complete=False, problem="end marker without a begin marker")
            )
        elif end_of[token] != open_layout:
            spans.append(
                SpanLocation(
                    open_layout, open_start, position + 1, complete=False,
                    problem=f"closed by the end marker of another modality (id {token})",
                )
            )
            open_layout = None
        else:
            spans.append(SpanLocation(open_layout, open_start, position + 1, complete=True))
            open_layout = None
    if open_layout is not None:
        spans.append(SpanLocation(open_layout, open_start, ids.numel(), complete=False))
    return spans
