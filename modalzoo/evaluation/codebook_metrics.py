"""Codebook usage and perplexity of the codes a tokenizer emits on a dataset.

* `codebook_usage`: the fraction of a codebook's entries used at least once (TiTok's evaluator
  "CodebookUsage"), averaged over the Q codebooks / scales;
* `codebook_perplexity`: exp of the entropy of the code histogram (the "effective number of
  codes": equal to the codebook size for a uniform distribution, 1 when one code is always
  used), averaged over codebooks;
* `codebook_entropy_bits`: that entropy in bits (TiTok's "CodebookEntropy"), averaged.

Padded positions (False in `codes_mask`) are not counted.
"""

from __future__ import annotations

import math

import torch

CODEBOOK_METRICS = ("codebook_usage", "codebook_perplexity", "codebook_entropy_bits")


class CodebookUsage:
    def __init__(self, codebook_sizes: list[int]):
        if not codebook_sizes:
            raise ValueError("codebook_sizes must hold at least one codebook")
        self.codebook_sizes = [int(size) for size in codebook_sizes]
        self.counts = [torch.zeros(size, dtype=torch.float64) for size in self.codebook_sizes]

    @torch.no_grad()
    def update(self, codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> None:
        """codes `[B, Q, T]` (Q may be fewer than the model's codebooks), mask `[B, T]`."""
        if codes.ndim != 3:
            raise ValueError(f"codes must be [batch, codebooks, positions], got {tuple(codes.shape)}")
        if codes.shape[1] > len(self.codebook_sizes):
            raise ValueError(f"codes have {codes.shape[1]} codebooks, expected at most {len(self.codebook_sizes)}")
        codes = codes.detach().cpu().long()
        mask = None if codes_mask is None else codes_mask.detach().cpu().bool()
        for index in range(codes.shape[1]):
            row = codes[:, index]
            row = row[mask] if mask is not None else row.reshape(-1)
            self.counts[index] += torch.bincount(row, minlength=self.codebook_sizes[index]).double()

    def compute(self) -> dict[str, float]:
        used = [counts for counts in self.counts if counts.sum() > 0]
        if not used:
            raise ValueError("no codes were counted")
        usage, perplexity, entropy_bits = [], [], []
        for counts in used:
            probabilities = counts / counts.sum()
            nonzero = probabilities[probabilities > 0]
            entropy = float(-(nonzero * nonzero.log()).sum())
            usage.append(float((counts > 0).sum()) / counts.numel())
            perplexity.append(math.exp(entropy))
            entropy_bits.append(entropy / math.log(2))
        return {
            "codebook_usage": sum(usage) / len(usage),
            "codebook_perplexity": sum(perplexity) / len(perplexity),
            "codebook_entropy_bits": sum(entropy_bits) / len(entropy_bits),
        }
