"""Exponential moving average of the generator's weights (kept in fp32, on the model's device).

Buffers (codebook statistics, EMA codebooks) are copied, not averaged: they are already running
statistics, and averaging a k-means-initialised codebook with its random init would be wrong.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, *, decay: float, start_step: int = 0):
        self.decay = decay
        self.start_step = start_step
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)
        self.num_updates = 0

    def current_decay(self, step: int) -> float:
        """diffusers' `EMAModel` schedule (which the TiTok recipe trains with): the decay grows
        as (1 + n) / (10 + n) up to `decay`, so early averages are not dominated by the random
        init; before `start_step` the average simply tracks the model."""
        if step < self.start_step:
            return 0.0
        updates = step - self.start_step
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Called after each optimiser step."""
        decay = self.current_decay(step)
        ema_params = dict(self.model.named_parameters())
        model_params = [(name, p) for name, p in model.named_parameters() if name in ema_params]
        targets = [ema_params[name] for name, _ in model_params]
        sources = [p.detach().to(dtype=t.dtype) for (_, p), t in zip(model_params, targets)]
        if targets:
            torch._foreach_lerp_(targets, sources, 1.0 - decay)
        ema_buffers = dict(self.model.named_buffers())
        for name, buffer in model.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].copy_(buffer)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = state["num_updates"]
