"""Auxiliary losses of pooling layers, found by duck typing so any pool can carry one.

A layer that wants a term added to the task loss exposes an ``aux_loss`` attribute: the (already weighted) loss of
its last forward in training mode, or ``None``. :func:`auxiliary_loss` sums them over a model; the training loop adds
that sum to the cross-entropy, whatever the pool. :class:`~robustbench_lift.layers.lift.LiftDownPool2d` is one such
layer; a new pool with its own regulariser needs only to set ``aux_loss`` in its ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["auxiliary_loss", "has_auxiliary_loss"]


def has_auxiliary_loss(module: nn.Module) -> bool:
    """Whether ``module`` declares an auxiliary loss (an ``aux_loss`` attribute, set or not)."""
    return "aux_loss" in dir(type(module)) or "aux_loss" in vars(module)


def auxiliary_loss(model: nn.Module) -> Tensor:
    """Sum of the ``aux_loss`` of every layer of ``model`` that has one, from its last training-mode forward.

    Returns:
        A scalar tensor; zero (on the model's device and dtype) when no layer has a loss to give.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    losses = []
    for module in model.modules():
        value = getattr(module, "aux_loss", None) if has_auxiliary_loss(module) else None
        if isinstance(value, Tensor):
            losses.append(value.reshape(()))
    if losses:
        return torch.stack(losses).sum()
    param = next(model.parameters(), None)
    if param is None:
        return torch.zeros(())
    return torch.zeros((), device=param.device, dtype=param.dtype)
