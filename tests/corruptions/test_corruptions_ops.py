"""Building blocks of the corruption engine against closed forms and the libraries the reference uses."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats

from corruptions import _ops
from corruptions.base import Context
from corruptions.blur import (
    _glass_shuffle_torch,
    disk_kernel,
    glass_shuffle,
    motion_blur,
    zoom_blur,
)
from corruptions.digital import box_resize_matrix, jpeg_compression, nearest_index, pixelate
from corruptions.noise import poisson_levels


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(23, 30), (150, 160)])
@pytest.mark.parametrize("mode", _ops.MODES)
@pytest.mark.parametrize("sigma", [0.4, 1.5, 6.0, 40.0])
def test_gaussian_blur_matches_scipy(mode, sigma, size):
    x = _rand(2, 3, *size)
    ours = _ops.gaussian_blur(x, sigma, mode=mode, truncate=3.0)
    ref = ndimage.gaussian_filter(x.double().numpy(), (0, 0, sigma, sigma), mode=mode, truncate=3.0)
    err = np.abs(ours.double().numpy() - ref).max()
    assert err < 1e-5, f"max error {err}"


def test_boundary_index_rejects_unknown_mode():
    with pytest.raises(ValueError, match="valid: nearest, reflect, mirror, wrap"):
        _ops.boundary_index(5, 1, 1, "zeros")


@pytest.mark.parametrize("path", ["dispatch", "torch"])
@pytest.mark.parametrize("ksize", [(3, 3), (9, 9), (17, 17), (5, 11)])
def test_filter2d_matches_opencv(ksize, path):
    x = _rand(2, 3, 29, 34)
    kernel = _rand(*ksize, seed=1)
    ours = _ops.filter2d(x, kernel) if path == "dispatch" else _ops._filter2d_torch(x, kernel, "mirror")
    for i in range(2):
        ref = cv2.filter2D(x[i].permute(1, 2, 0).numpy(), -1, kernel.numpy())
        err = np.abs(ours[i].permute(1, 2, 0).numpy() - ref).max()
        assert err < 1e-4, f"max error {err}"


def test_disk_kernel_is_normalised_and_cropped():
    for radius, alias in [(0.3, 0.4), (1.5, 0.1), (3, 0.1), (8, 0.5), (10, 0.5)]:
        k = disk_kernel(radius, alias)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        torch.testing.assert_close(k, k.flip(0).flip(1))
        if radius < 8:
            assert abs(float(k.sum()) - 1.0) < 1e-5
    assert disk_kernel(0.3, 0.4).shape == (3, 3)
    # from radius 8 on the reference's grid is exactly 2r + 1 wide: the disk touches its edge and the anti-alias blur
    # (mirrored borders) folds mass back in, so the kernel sums to slightly more than 1 - kept as published
    big = disk_kernel(10, 0.5)
    assert big.shape == (21, 21) and 1.005 < float(big.sum()) < 1.02


def _glass_sequential(img: np.ndarray, offsets: np.ndarray, d: int) -> np.ndarray:
    """The reference's loop, verbatim in behaviour: the tuple "swap" of numpy views copies one pixel over the other."""
    x = img.copy()
    h, w = x.shape[:2]
    for hi, r in enumerate(range(h - d, d, -1)):
        for wi, c in enumerate(range(w - d, d, -1)):
            dy, dx = offsets[:, h - 2 * d - 1 - hi, w - 2 * d - 1 - wi]
            x[r, c], x[r + dy, c + dx] = x[r + dy, c + dx], x[r, c]
    return x


@pytest.mark.parametrize("shuffle", [glass_shuffle, _glass_shuffle_torch], ids=["cpu", "torch"])
@pytest.mark.parametrize("d", [1, 2, 4, 9])
def test_glass_shuffle_matches_the_sequential_reference(d, shuffle):
    g = torch.Generator().manual_seed(d)
    x = torch.rand(2, 3, 19, 24, generator=g)
    offsets = torch.randint(-d, d, (2, 2, 19 - 2 * d, 24 - 2 * d), generator=g)
    ours = shuffle(x, offsets, d)
    for i in range(2):
        ref = _glass_sequential(x[i].permute(1, 2, 0).numpy(), offsets[i].numpy(), d)
        assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), ref)
    assert not torch.equal(ours, x)


def test_small_integer_draws_match_int64_draws():
    # glass_blur draws its offsets as int16: the values (and the generator's state after) must be ctx.randint's
    for dtype in (torch.int16, torch.int32):
        g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        a = torch.randint(-4, 4, (3, 2, 50, 61), generator=g1)
        b = torch.randint(-4, 4, (3, 2, 50, 61), generator=g2, dtype=dtype)
        assert torch.equal(a, b.long()) and torch.equal(g1.get_state(), g2.get_state())


def test_glass_shuffle_too_small_is_identity():
    x = _rand(1, 3, 6, 6)
    assert torch.equal(glass_shuffle(x, torch.zeros(1, 2, 0, 0, dtype=torch.long), 3), x)


def test_motion_taps_follow_the_reference_kernel():
    kernel, dy, dx, alive = _ops.motion_taps(10, 3, torch.tensor([0.0]), 224, 224)
    assert kernel.shape == (21,) and bool(alive.all())
    assert dx[0].tolist() == [-i for i in range(21)] and dy[0].tolist() == [0] * 21
    weights = np.exp(-(np.arange(21) ** 2) / 18.0)
    np.testing.assert_allclose(kernel.numpy(), weights / weights.sum(), rtol=1e-12)
    # taps beyond the image are dropped without renormalising
    kernel, _, _, alive = _ops.motion_taps(10, 3, torch.tensor([0.0]), 224, 8)
    assert int(alive.sum()) == 8 and float(kernel[alive[0]].sum()) < 1.0
    assert _ops.motion_taps(9.5, 3, torch.tensor([0.0]), 64, 64)[0].numel() == 21  # 2 ceil(r) + 1 taps


def _reference_helpers():
    from corruptions.reference import _load

    return _load().corruptions  # the package's own module (its private helpers live there)


@pytest.mark.parametrize("size", [(40, 50), (90, 70)])  # the gather and the slice paths
@pytest.mark.parametrize(("radius", "sigma"), [(6, 1.5), (15, 8)])
def test_shared_motion_blur_equals_the_reference(size, radius, sigma):
    ref = _reference_helpers()
    x = _rand(3, 1, *size, seed=4)
    angles = torch.tensor([-45.0, 13.7, -100.0], dtype=torch.float64)
    ours = _ops.motion_blur(x, radius, sigma, angles)
    for i, angle in enumerate(angles.tolist()):
        want = ref._motion_blur(x[i, 0].double().numpy(), radius=radius, sigma=sigma, angle=angle)
        np.testing.assert_allclose(ours[i, 0].numpy(), want, atol=2e-6)


def test_shared_clipped_zoom_equals_the_reference():
    ref = _reference_helpers()
    x = _rand(1, 1, 37, 37, seed=5)
    for factor in (1.0, 1.3, 2.5):
        ours = _ops.clipped_zoom(x, factor)
        want = ref.clipped_zoom(x[0, 0].double().numpy()[..., None], factor)[..., 0]
        assert ours.shape[-2:] == want.shape
        np.testing.assert_allclose(ours[0, 0].numpy(), want, atol=1e-5)


def test_motion_blur_of_constant_image_is_constant():
    x = torch.full((2, 3, 32, 32), 0.3)
    ctx = Context(seeds=[1, 2], native_size=32, suite="t")
    torch.testing.assert_close(motion_blur(x, (6, 1), ctx), x)


def test_zoom_blur_matches_scipy_zoom():
    x = _rand(1, 3, 40, 40)
    factors = (1.0, 1.05, 1.1, 1.2)
    ours = zoom_blur(x, factors, Context(seeds=[0], native_size=32, suite="t"))
    img = x[0].permute(1, 2, 0).numpy()
    acc = img.copy()
    for z in factors:
        ch = int(math.ceil(40 / z))
        top = (40 - ch) // 2
        layer = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
        acc += layer[:40, :40]
    ref = acc / (len(factors) + 1)
    err = np.abs(ours[0].permute(1, 2, 0).numpy() - ref).max()
    assert err < 1e-5, f"max error {err}"


@pytest.mark.parametrize(
    ("size", "factor"), [(224, 0.6), (224, 0.25), (96, 0.4), (32, 0.95), (32, 0.65), (37, 0.5)]
)
def test_pixelate_matches_pillow(size, factor):
    x8 = (
        (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)) * 255)
        .round()
        .to(torch.uint8)
    )
    ours = pixelate(x8.float() / 255, factor, Context(seeds=[0], native_size=size, suite="t"))
    ours = (ours[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    small = (int(size * factor), int(size * factor))
    im = Image.fromarray(x8[0].permute(1, 2, 0).numpy()).resize(small, Image.BOX)
    for up in (Image.NEAREST, Image.BOX):
        ref = np.asarray(im.resize((size, size), up))
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_resize_weights():
    m = box_resize_matrix(10, 5)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(5))
    assert torch.equal(nearest_index(3, 6), torch.tensor([0, 0, 1, 1, 2, 2]))


def test_jpeg_matches_pillow_and_handles_gray():
    x8 = (torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(3)) * 255).round().to(torch.uint8)
    ours = jpeg_compression(x8.float() / 255, 20, Context(seeds=[0, 1], native_size=32, suite="t"))
    for i in range(2):
        buf = io.BytesIO()
        Image.fromarray(x8[i].permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=20)
        ref = np.asarray(Image.open(buf))
        assert np.array_equal((ours[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy(), ref)
    gray = jpeg_compression(x8[:, :1].float() / 255, 20, Context(seeds=[0, 1], native_size=32, suite="t"))
    assert gray.shape == (2, 1, 32, 40)


@pytest.mark.parametrize("lam", [3.0, 60.0, 500.0])
def test_poisson_levels_inverts_the_exact_cdf(lam):
    g = torch.Generator().manual_seed(int(lam))
    levels = torch.randint(0, 256, (20000,), generator=g)
    u = torch.rand(20000, generator=g, dtype=torch.float64)
    ours = poisson_levels(levels, lam, u).double().numpy()
    mu = levels.double().numpy() * lam / 255.0
    ref = np.where(mu == 0, 0.0, stats.poisson.ppf(u.numpy(), np.maximum(mu, 1e-12)))
    assert np.array_equal(ours, ref)


def test_rgb_gray_helpers():
    x = _rand(2, 3, 4, 4)
    gray = _ops.rgb_to_gray(x)
    torch.testing.assert_close(gray[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert _ops.to_rgb(gray).shape == (2, 3, 4, 4)
    torch.testing.assert_close(_ops.from_rgb(_ops.to_rgb(gray), 1), gray)
