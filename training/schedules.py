"""Learning-rate schedules: linear warm-up from 0, then constant, cosine or linear decay to an
end learning rate (as the originals' `get_scheduler(..., num_warmup_steps, end_lr)`)."""

from __future__ import annotations

import math

import torch

from .config import ScheduleSection


def lr_factor(step: int, *, name: str, base_lr: float, warmup_steps: int, total_steps: int, end_lr: float) -> float:
    """Multiplier of `base_lr` after `step` optimiser steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant" or base_lr == 0:
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    end = end_lr / base_lr
    if name == "cosine":
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "linear":
        return end + (1.0 - end) * (1.0 - progress)
    raise ValueError(f"unknown schedule {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleSection, total_steps: int):
    base_lr = optimizer.param_groups[0]["lr"]
    total = schedule.total_steps or total_steps

    def factor(step: int) -> float:
        return lr_factor(
            step, name=schedule.name, base_lr=base_lr, warmup_steps=schedule.warmup_steps, total_steps=total, end_lr=schedule.end_lr
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
