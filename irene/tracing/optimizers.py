"""The optimisers a training-step trace runs, and which parameters a step trains.

Shared by the tracer (:mod:`irene.tracing.train_step`) and the replays
(:mod:`irene.tracing.train_replay`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from irene.schema import OPTIMIZER_NAMES


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimiser the tracer builds: ``name`` (CLI/metadata), ``label`` (node type),
    ``settings`` (keyword arguments, recorded in the tree) and the FLOPs per element of one
    steady-state step (``flops_per_element`` plus ``flops_per_tensor``)."""

    name: str
    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    flops_per_element: int = 0
    flops_per_tensor: int = 0

    def make(self, params: Iterable[torch.Tensor], *,
             foreach: bool | None = None) -> torch.optim.Optimizer:
        """The optimiser over ``params`` (``foreach=None``: PyTorch's default implementation
        for the device; False: the single-tensor loop, whose FLOPs the counter sees)."""
        cls = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[self.name]
        return cls(list(params), foreach=foreach, **self.settings)

    def expected_flops(self, numel: int, tensors: int = 1) -> int:
        """FLOPs of one steady-state step over ``tensors`` tensors holding ``numel`` elements."""
        return self.flops_per_element * numel + self.flops_per_tensor * tensors


#: the optimisers (AdamW: weight decay 1, two moment updates 2 + 3, denominator 3, update 2 =
#: 11 per element, +1 for the step counter; SGD with momentum: buffer 2, update 1)
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adamw": OptimizerSpec("adamw", "AdamW", {"lr": 1e-4, "weight_decay": 0.01}, 11, 1),
    "sgd": OptimizerSpec("sgd", "SGD", {"lr": 1e-3, "momentum": 0.9}, 3, 0),
}
DEFAULT_OPTIMIZER = OPTIMIZER_NAMES[0]
assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES, "irene.schema.OPTIMIZER_NAMES lists the optimisers"


def get_optimizer(name: str) -> OptimizerSpec:
    """The :class:`OptimizerSpec` called ``name``; ValueError listing the known ones."""
    try:
        return OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None


def unique_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every distinct trainable parameter (tied weights once, first name)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def trained_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every distinct parameter that received a gradient in the backward
    pass (tied weights once, under their first name): the ones an optimiser step updates."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
