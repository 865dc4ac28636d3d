"""The contract between the corruption registry and each corruption function.

A corruption is registered with::

    @CORRUPTIONS.register("gaussian_noise", category="noise", benchmark=True)
    def gaussian_noise(x: Tensor, param, ctx: Context) -> Tensor: ...

``x`` is float32 in [0, 1], shape (N, C, H, W), C in {1, 3}, on any device; ``param`` is the severity's entry of the
suite table (a number or a tuple); ``ctx`` carries the per-image random generators and the size information. The
function returns a tensor of the same shape and device (the API clamps to [0, 1] and restores the caller's dtype).
Every random draw goes through ``ctx`` so that image i's output depends only on its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .registry import Registry
from .rng import derive_seed

__all__ = ["CORRUPTIONS", "PERTURBATIONS", "Context"]

CORRUPTIONS: Registry = Registry("corruption")
PERTURBATIONS: Registry = Registry("perturbation")


@dataclass
class Context:
    """Per-call state handed to a corruption function.

    Args:
        seeds: one derived seed per image (already a function of seed, sample id, corruption and severity).
        native_size: the image side the suite's parameters were written for (224 for imagenet-c, 32 for cifar10-c).
        suite: the suite's name.
        device: where ``x`` lives; random tensors are drawn on the CPU and moved here.
        elastic_variant: the suite's elastic transform (``"hendrycks"`` or ``"imagecorruptions"``, see
            ``corruptions.suites.ELASTIC_VARIANTS``).
    """

    seeds: list[int]
    native_size: int
    suite: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    elastic_variant: str = "hendrycks"
    _torch_gens: list[torch.Generator] | None = field(default=None, repr=False)
    _numpy_gens: list[np.random.Generator] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def generators(self) -> list[torch.Generator]:
        """One CPU ``torch.Generator`` per image; successive draws continue each image's stream."""
        if self._torch_gens is None:
            gens = []
            for s in self.seeds:
                g = torch.Generator(device="cpu")
                g.manual_seed(s)
                gens.append(g)
            self._torch_gens = gens
        return self._torch_gens

    def numpy(self, i: int) -> np.random.Generator:
        """Image ``i``'s numpy generator (a stream separate from its torch one)."""
        if self._numpy_gens is None:
            self._numpy_gens = [
                np.random.Generator(np.random.PCG64(derive_seed(s, "numpy"))) for s in self.seeds
            ]
        return self._numpy_gens[i]

    def _stack(self, draw) -> torch.Tensor:
        return torch.stack([draw(g) for g in self.generators]).to(self.device)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.rand(shape, generator=g, dtype=dtype))

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.randn(shape, generator=g, dtype=dtype))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high) of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.randint(low, high, shape, generator=g))

    def scale(self, height: int, width: int) -> float:
        """How far the image is from the suite's native size: min(H, W) / native_size."""
        return min(height, width) / float(self.native_size)
