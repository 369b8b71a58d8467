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
