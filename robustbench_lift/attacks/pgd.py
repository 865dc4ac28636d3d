"""Projected gradient descent (Madry et al., ICLR 2018) in the L-inf and L2 balls, seeded per image.

The attack maximises the cross-entropy of ``forward(x)`` over ``x`` in the ball of radius ``eps`` around the clean
image intersected with the pixel box [0, 1]:

* random start: uniform in the L-inf ball, or a uniformly random direction at a uniform radius in [0, eps] for L2;
  each image draws from its own generator, so its trajectory does not depend on the rest of the batch;
* ``steps`` steps of size ``step_size`` (default ``2.5 * eps / steps``): the sign of the gradient for L-inf, the
  gradient divided by its L2 norm for L2; after each step, projection onto the ball, then clipping to [0, 1];
* ``restarts`` independent starts; an image counts as broken when any of them is misclassified at any step's end
  (the first such point is kept as its adversarial example, else the last iterate of the last restart).
  Every iterate is checked, the random start included: ``steps + 1`` forward and ``steps`` backward passes per
  restart, plus one forward and backward on the clean images for the gradient check.

The loss is summed over the batch, so every image's gradient is its own. Models must be in eval mode (batch norm in
training mode would couple the images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NORMS", "PGDResult", "default_step_size", "loss_and_grad", "pgd_attack"]

NORMS: tuple[str, ...] = ("linf", "l2")


def default_step_size(eps: float, steps: int) -> float:
    """The usual step size: ``2.5 * eps / steps`` (lets the iterate cross the ball and come back)."""
    return 2.5 * float(eps) / max(int(steps), 1)


@dataclass
class PGDResult:
    """``adv``: adversarial images; ``broken``: (N,) bool, misclassified at some step of some restart;
    ``grad_norm``: (N,) L2 norm of the loss gradient w.r.t. the clean input (0 where gradients vanish)."""

    adv: Tensor
    broken: Tensor
    grad_norm: Tensor


def _per_sample_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _random_start(x: Tensor, eps: float, norm: str, generators: Sequence[torch.Generator]) -> Tensor:
    shape = x.shape[1:]
    deltas = []
    for g in generators:
        if norm == "linf":
            d = torch.rand(shape, generator=g, dtype=torch.float64).mul_(2).sub_(1).mul_(eps)
        else:
            d = torch.randn(shape, generator=g, dtype=torch.float64)
            d = (
                d
                / d.norm().clamp_min(1e-12)
                * (eps * float(torch.rand((), generator=g, dtype=torch.float64)))
            )
        deltas.append(d)
    return torch.stack(deltas).to(device=x.device, dtype=x.dtype)


def _project(delta: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _per_sample_norm(delta)
    return delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)


def _step(grad: Tensor, step_size: float, norm: str) -> Tensor:
    if norm == "linf":
        return step_size * grad.sign()
    return step_size * grad / _per_sample_norm(grad).clamp_min(1e-12)


def loss_and_grad(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Logits at ``x`` and the gradient of the summed cross-entropy w.r.t. ``x`` (each image's own), detached."""
    x = x.detach().requires_grad_(True)
    logits = forward(x)
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return logits.detach(), grad.detach()


def _record(logits: Tensor, xa: Tensor, y: Tensor, adv: Tensor, broken: Tensor) -> None:
    """Mark images misclassified at ``xa`` as broken (in place), keeping the first such point as the example."""
    wrong = logits.argmax(1) != y
    newly = wrong & ~broken
    adv[newly] = xa[newly]
    broken |= wrong


def pgd_attack(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    restarts: int = 1,
    generators: Sequence[Sequence[torch.Generator]] | None = None,
    random_start: bool = True,
) -> PGDResult:
    """Run PGD on a batch.

    Args:
        forward: images in [0, 1] (the whole input pipeline is inside: resize, normalisation, model) -> logits.
        x: clean images (N, C, H, W) in [0, 1]; y: labels (N,).
        eps: radius on the [0, 1] pixel scale; 0 returns the clean images.
        norm: ``"linf"`` or ``"l2"``.
        steps, step_size, restarts: as in the module docstring (step size default ``2.5 * eps / steps``).
        generators: ``generators[r][i]`` draws image i's random start of restart r (required with random_start).
        random_start: start from a random point of the ball (True) or from the clean image.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    x = x.detach()
    logits0, grad0 = loss_and_grad(forward, x, y)
    grad_norm = grad0.flatten(1).norm(dim=1)
    broken = logits0.argmax(1) != y
    adv = x.clone()
    if eps == 0:
        return PGDResult(adv=adv, broken=broken, grad_norm=grad_norm)
    alpha = default_step_size(eps, steps) if step_size is None else float(step_size)
    if random_start and (generators is None or len(generators) < restarts):
        raise ValueError("random_start needs one list of per-image generators per restart")
    for r in range(restarts):
        delta = _random_start(x, eps, norm, generators[r]) if random_start else torch.zeros_like(x)
        xa = (x + delta).clamp(0, 1)
        for _ in range(steps):
            logits, grad = loss_and_grad(forward, xa, y)
            _record(logits, xa, y, adv, broken)  # the current iterate, before its step
            xa = x + _project(xa + _step(grad, alpha, norm) - x, eps, norm)
            xa = xa.clamp(0, 1).detach()
        with torch.no_grad():
            _record(forward(xa), xa, y, adv, broken)
        keep = ~broken
        adv[keep] = xa[keep]
    return PGDResult(adv=adv, broken=broken, grad_norm=grad_norm)
