"""Image similarity: PSNR and SSIM per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


# ====================================================================================================== reconstruction
def psnr(x: Tensor, y: Tensor, data_range: Tensor | float = 1.0) -> Tensor:
    """Per-image PSNR in dB of reconstruction ``y`` against ``x`` (N, ...), ``10 log10(range^2 / MSE)``.

    MSE is floored at 1e-30 x range^2 so an exact reconstruction gives a finite 300 dB.
    """
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(r**2 / torch.maximum(mse, 1e-30 * r**2))


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: Tensor, y: Tensor, data_range: Tensor | float = 1.0, *, win_size: int = 11, sigma: float = 1.5
) -> Tensor:
    """Per-image SSIM (Wang et al. 2004) of ``y`` against ``x``, (N, C, H, W) -> (N,).

    Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03, population covariances, statistics only where the
    window fits (no padding), averaged over positions and channels. Equals scikit-image's
    ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``. The window shrinks to the
    largest odd size that fits images smaller than 11 px.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two (N, C, H, W) tensors of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    win = min(win_size, min(x.shape[-2:]))
    win -= 1 - win % 2
    g = _gaussian_window(win, sigma, x.device)
    c = x.shape[1]
    kh = g.view(1, 1, -1, 1).expand(c, 1, win, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, win)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    a, b = x.double(), y.double()
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)
