"""Codebooks under mixed precision and data parallelism.

* fp32: nearest-neighbour search, EMA statistics and commitment terms lose codes under bf16/fp16
  (near-ties flip, small EMA increments vanish). `run_quantizers_in_fp32` makes every quantizer
  module run with autocast off on fp32 inputs, on CUDA and on CPU alike (vector-quantize-pytorch
  only disables CUDA autocast itself).
* DDP: EMA codebooks must see the statistics of the global batch, or each rank's codebook drifts
  apart (and DDP's buffer broadcast then silently keeps rank 0's). vector-quantize-pytorch
  all-reduces cluster sizes and sums, samples k-means and dead-code vectors across ranks when
  built with `sync_codebook=True`, which it decides once from the process group at
  construction; `synchronise_codebooks` switches it on for codebooks built before the group
  existed (or loaded). modalzoo's EnCodec-layout `EuclideanCodebook` broadcasts rank 0's buffers
  after k-means and dead-code restarts; here its EMA update is made to all-reduce the batch
  counts and sums first, so every rank applies the global batch's update (the same update one
  process with the whole batch applies).
* Dead codes: EnCodec's `expire_codes_` (copied by WavTokenizer, X-Codec, SpeechTokenizer and
  DM-Codec, and reproduced by modalzoo's `EuclideanCodebook`) writes batch vectors into `embed`
  and then, in the same step, the EMA update overwrites every row of `embed` with
  `embed_avg / cluster_size`: the restart has no effect. At scale k-means on a big first batch
  hides this; on a small model the encoder's features drift by more than their spread within a
  few steps (lr 1e-3: the whole cloud moves by ~0.5 while frames differ by ~0.003), every frame
  lands on the one code nearest the new cloud, and with no working restart the codebook never
  follows: one code for everything. `restart_dead_codes` (recipe `codebook_restarts: true`)
  makes restarts take effect as vector-quantize-pytorch does: a restarted code gets the batch
  vector in `embed`, `threshold x vector` in `embed_avg` and `threshold` in `cluster_size`.
* Learned code tables (`EmbeddingVectorQuantizer`: TiTok, One-D-Piece) have no restarts at all.
  Trained from scratch (TiTok's recipes start from proxy codes or a pretrained stage instead),
  a small TiTok's latent tokens come out of the encoder 25x more alike across images than across
  positions, so every image gets the same codes and the decoder learns the mean image.
  `LearnedCodeRestarts` (the same recipe flag) keeps a usage EMA per code and replaces codes
  used less than `codebook_restart_threshold` times per step (EMA) with encoder outputs of the
  current batch; all codes start unused, so the first step seeds the table from data.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def _is_quantizer(module: nn.Module) -> bool:
    origin = type(module).__module__
    return origin.startswith("modalzoo.quantizers") or origin.startswith("vector_quantize_pytorch")


def quantizer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost quantizer modules of `model`."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if _is_quantizer(module) and not any(name.startswith(prefix + ".") for prefix, _ in found):
            found.append((name, module))
    return found


def _fp32(value):
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


def run_quantizers_in_fp32(model: nn.Module, device_type: str) -> list[str]:
    """Wraps each outermost quantizer's forward: autocast off, floating inputs cast to fp32.
    Returns the wrapped module names. Apply to the training model only (after the EMA copy is
    taken): the wrapper is an instance attribute bound to this module."""
    wrapped = []
    for name, module in quantizer_modules(model):
        if getattr(module, "_modalzoo_fp32", False):
            continue
        original = module.forward

        @functools.wraps(original)
        def forward(*args, __original=original, **kwargs):
            with torch.autocast(device_type=device_type, enabled=False):
                return __original(*(_fp32(a) for a in args), **{k: _fp32(v) for k, v in kwargs.items()})

        module.forward = forward
        module._modalzoo_fp32 = True
        wrapped.append(name)
    return wrapped


# ----- distributed statistics ---------------------------------------------------------------------------
def _distributed_ema_update_(codebook, flat: torch.Tensor, codes: torch.Tensor) -> None:
    """modalzoo `EuclideanCodebook._ema_update_` on the global batch's statistics."""
    with torch.no_grad():
        onehot = F.one_hot(codes, codebook.codebook_size).to(flat.dtype)
        counts = onehot.sum(0)
        sums = (flat.t() @ onehot).t().contiguous()
        torch.distributed.all_reduce(counts)
        torch.distributed.all_reduce(sums)
        codebook.cluster_size.mul_(codebook.decay).add_(counts, alpha=1 - codebook.decay)
        codebook.embed_avg.mul_(codebook.decay).add_(sums, alpha=1 - codebook.decay)
        total = codebook.cluster_size.sum()
        smoothed = (codebook.cluster_size + codebook.epsilon) / (total + codebook.codebook_size * codebook.epsilon) * total
        codebook.embed.copy_(codebook.embed_avg / smoothed[:, None])


def synchronise_codebooks(model: nn.Module) -> dict[str, int]:
    """Turns on cross-rank codebook statistics for every codebook in `model` when a process
    group of more than one rank exists. Returns counts by codebook kind (for the run log)."""
    counts = {"vector_quantize_pytorch": 0, "euclidean_codebook": 0}
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed or torch.distributed.get_world_size() < 2:
        return counts
    import vector_quantize_pytorch.vector_quantize_pytorch as vqp

    for module in model.modules():
        if isinstance(module, vqp.Codebook):
            module.use_ddp = True
            module.sample_fn = vqp.sample_vectors_distributed
            module.replace_sample_fn = vqp.sample_vectors_distributed
            module.kmeans_all_reduce_fn = torch.distributed.all_reduce
            module.all_reduce_fn = torch.distributed.all_reduce
            counts["vector_quantize_pytorch"] += 1
        elif type(module).__name__ == "EuclideanCodebook" and type(module).__module__.startswith("modalzoo.quantizers"):
            missing = [a for a in ("cluster_size", "embed_avg", "embed", "decay", "epsilon", "codebook_size") if not hasattr(module, a)]
            if missing or not hasattr(module, "_ema_update_"):
                raise RuntimeError(f"modalzoo EuclideanCodebook changed (missing {missing}); update training/codebooks.py")
            module._ema_update_ = functools.partial(_distributed_ema_update_, module)
            counts["euclidean_codebook"] += 1
    return counts


def codebooks_in_sync(model: nn.Module) -> bool:
    """True when every codebook buffer is identical on all ranks (a check for tests and logs)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return True
    for _, module in quantizer_modules(model):
        for buffer in module.buffers():
            if not buffer.is_floating_point():
                continue
            reference = buffer.detach().clone()
            torch.distributed.broadcast(reference, src=0)
            same = torch.tensor(float(torch.equal(reference, buffer)), device=buffer.device)
            torch.distributed.all_reduce(same, op=torch.distributed.ReduceOp.MIN)
            if same.item() < 1:
                return False
    return True


# ----- dead-code restarts that take effect ----------------------------------------------------------------
def _effective_expire_(codebook, flat: torch.Tensor) -> None:
    """`EuclideanCodebook._expire_dead_codes_`, with the EMA statistics of restarted codes reset
    so that the update that follows keeps the new vectors (see the module docstring)."""
    from modalzoo.quantizers.euclidean_codebook import _broadcast_from_rank0, _sample_rows

    threshold = codebook.threshold_ema_dead_code
    if threshold <= 0:
        return
    with torch.no_grad():
        dead = codebook.cluster_size < threshold
        if not dead.any():
            return
        samples = _sample_rows(flat, codebook.codebook_size)
        codebook.embed.copy_(torch.where(dead[:, None], samples, codebook.embed))
        codebook.embed_avg.copy_(torch.where(dead[:, None], samples * threshold, codebook.embed_avg))
        codebook.cluster_size.copy_(torch.where(dead, torch.full_like(codebook.cluster_size, threshold), codebook.cluster_size))
        _broadcast_from_rank0([codebook.embed, codebook.embed_avg, codebook.cluster_size])


def restart_dead_codes(model: nn.Module) -> int:
    """Makes the dead-code restarts of every modalzoo `EuclideanCodebook` in `model` take effect
    (training only: inference never restarts). Returns the number of codebooks changed."""
    changed = 0
    for module in model.modules():
        if type(module).__name__ == "EuclideanCodebook" and type(module).__module__.startswith("modalzoo.quantizers"):
            if not hasattr(module, "_expire_dead_codes_"):
                raise RuntimeError("modalzoo EuclideanCodebook changed (no _expire_dead_codes_); update training/codebooks.py")
            module._expire_dead_codes_ = functools.partial(_effective_expire_, module)
            changed += 1
    return changed


class LearnedCodeRestarts:
    """Usage-driven restarts of gradient-learned code tables (see the module docstring).
    `state_dict()` / `load_state_dict()` carry the usage statistics through checkpoints."""

    def __init__(self, model: nn.Module, *, threshold: float, decay: float = 0.99, restart_usage: float = 1.0):
        self.threshold, self.decay, self.restart_usage = threshold, decay, restart_usage
        self.usage: dict[str, torch.Tensor] = {}
        self.restarted = 0  # codes restarted so far (for logs and tests)
        for name, module in quantizer_modules(model):
            if type(module).__name__ != "EmbeddingVectorQuantizer":
                continue
            self.usage[name] = torch.zeros(module.codebook_size, device=module.codebook.weight.device)
            original = module.forward

            @functools.wraps(original)
            def forward(z, *args, __original=original, __name=name, __module=module, **kwargs):
                output = __original(z, *args, **kwargs)
                if __module.training:
                    self._update(__name, __module, z, output.codes)
                return output

            module.forward = forward

    def __len__(self) -> int:
        return len(self.usage)

    @torch.no_grad()
    def _update(self, name: str, module: nn.Module, z: torch.Tensor, codes: torch.Tensor) -> None:
        from modalzoo.quantizers.euclidean_codebook import _broadcast_from_rank0, _sample_rows

        counts = torch.bincount(codes.reshape(-1), minlength=module.codebook_size).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            counts /= torch.distributed.get_world_size()
        usage = self.usage[name]
        usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        dead = usage < self.threshold
        if not dead.any():
            return
        flat = z.detach().reshape(-1, module.dim).float()
        if module.use_l2_norm:
            flat = F.normalize(flat, dim=-1)
        weight = module.codebook.weight
        weight.copy_(torch.where(dead[:, None], _sample_rows(flat, module.codebook_size).to(weight.dtype), weight))
        _broadcast_from_rank0([weight])
        usage.masked_fill_(dead, self.restart_usage)
        self.restarted += int(dead.sum())

    def state_dict(self) -> dict:
        return {"usage": {k: v.clone() for k, v in self.usage.items()}, "restarted": self.restarted}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["usage"].items():
            self.usage[name].copy_(value)
        self.restarted = state["restarted"]
