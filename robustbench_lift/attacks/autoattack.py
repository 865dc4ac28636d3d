"""AutoAttack (Croce & Hein, ICML 2020) through a maintained library, imported only when an AutoAttack suite runs.

The standard version - APGD-CE, APGD-T, FAB-T and Square (5000 queries), one restart each - comes from
``torchattacks`` (the optional extra ``adversarial``). The library draws its random numbers for a whole batch from
one seed, so the toolkit runs it on fixed chunks of the cell's images (:data:`CHUNK` consecutive images of the
selected subset, the same for every model and whatever ``--batch-size`` is) and seeds each chunk from the run seed
and the chunk's first sample id. The global random state of the caller is saved and restored around each call.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

import torch
from torch import Tensor, nn

__all__ = ["CHUNK", "AutoAttackUnavailable", "autoattack_version", "run_autoattack"]

#: Images per AutoAttack call (fixed, so results do not depend on the evaluation batch size).
CHUNK = 64
_NORMS = {"linf": "Linf", "l2": "L2"}


class AutoAttackUnavailable(ValueError):
    """The optional AutoAttack dependency is not installed (a usage error: the CLI prints it and exits 2)."""


def autoattack_version() -> str:
    """``"torchattacks <version>"``; :class:`AutoAttackUnavailable` when the extra is not installed."""
    try:
        return f"torchattacks {metadata.version('torchattacks')}"
    except metadata.PackageNotFoundError:
        raise AutoAttackUnavailable(
            "the AutoAttack suites need the optional extra 'adversarial': pip install 'robustbench-lift[adversarial]' "
            "(installs torchattacks); the PGD suites (pgd-linf, pgd-l2) need nothing more"
        ) from None


class _Pipeline(nn.Module):
    """The model with its whole input pipeline, as the library expects: [0, 1] images in, logits out."""

    def __init__(self, forward: Callable[[Tensor], Tensor], model: nn.Module) -> None:
        super().__init__()
        self.inner = model  # registered so the library finds the device and the training mode
        self._forward = forward

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x).float()


def run_autoattack(
    forward: Callable[[Tensor], Tensor],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str,
    num_classes: int,
    seed: int,
    version: str = "standard",
) -> Tensor:
    """Adversarial images of AutoAttack for one chunk (``x`` in [0, 1]); eps 0 returns ``x``."""
    autoattack_version()
    import torchattacks

    if eps == 0:
        return x.detach().clone()
    wrapper = _Pipeline(forward, model).eval()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        attack = torchattacks.AutoAttack(
            wrapper, norm=_NORMS[norm], eps=float(eps), version=version, n_classes=int(num_classes), seed=seed
        )
        attack.set_device(x.device)
        return attack(x.detach(), y).detach()
