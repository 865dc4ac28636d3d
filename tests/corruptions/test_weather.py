"""Weather corruptions (snow, frost, fog, spatter): contract, determinism and fidelity to the published code."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import weather
from corruptions.base import CORRUPTIONS, Context
from corruptions.reference import frost_texture_paths, random_source, reference_function
from corruptions.rng import per_sample_seeds
from corruptions.suites import get_suite

NAMES = ("snow", "frost", "fog", "spatter")


def _ctx(n: int, name: str, severity: int, suite: str = "imagenet-c", ids=None) -> Context:
    s = get_suite(suite)
    ids = list(range(n)) if ids is None else ids
    return Context(seeds=per_sample_seeds(0, ids, name, severity), native_size=s.native_size, suite=s.name)


def _apply(name: str, x: torch.Tensor, severity: int, suite: str = "imagenet-c", ctx=None) -> torch.Tensor:
    """What the API does around a corruption function: call, clamp, quantise to 8-bit levels."""
    fn = CORRUPTIONS.get(name)
    ctx = ctx if ctx is not None else _ctx(len(x), name, severity, suite)
    out = fn(x, get_suite(suite).param(name, severity), ctx)
    return (out.clamp(0, 1) * 255).round() / 255


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (skimage's astronaut) at 64 x 72 px, on 8-bit levels."""
    from skimage import data

    img = cv2.resize(data.astronaut(), (72, 64), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


# --------------------------------------------------------------------------------------------- feeding draws
class _Feed:
    """Random numbers fed identically to our functions (as a Context) and to the published code (as np.random)."""

    def __init__(
        self, uniforms: np.ndarray, normals: np.ndarray, native_size: int = 224, suite: str = "imagenet-c"
    ):
        self.u, self.z = uniforms.ravel(), normals.ravel()
        self.iu = self.iz = 0
        self.seeds, self.native_size, self.suite, self.device = [0], native_size, suite, torch.device("cpu")

    def _take(self, which: str, k: int) -> np.ndarray:
        if which == "u":
            vals, self.iu = self.u[self.iu : self.iu + k], self.iu + k
        else:
            vals, self.iz = self.z[self.iz : self.iz + k], self.iz + k
        assert len(vals) == k, "ran out of fed random numbers"
        return vals

    # Context side (one image)
    def __len__(self) -> int:
        return 1

    def rand(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(self._take("u", math.prod(shape)), dtype=dtype).reshape(1, *shape)

    def randn(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(self._take("z", math.prod(shape)), dtype=dtype).reshape(1, *shape)

    # np.random side
    def uniform(self, low=0.0, high=1.0, size=None):
        k = 1 if size is None else math.prod(np.atleast_1d(size))
        v = low + (high - low) * self._take("u", k)
        return v[0] if size is None else v.reshape(size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        k = 1 if size is None else math.prod(np.atleast_1d(size))
        v = loc + scale * self._take("z", k)
        return v[0] if size is None else v.reshape(size)


def _fed_pair(name: str, severity: int, x: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Our output and the published output (uint8 HWC) of one image on identical random numbers."""
    rs = np.random.default_rng(seed)
    u, z = rs.random(1 << 16), rs.standard_normal(1 << 16)
    ours = _apply(name, x, severity, ctx=_Feed(u, z))
    ours = (ours[0] * 255).round().byte().permute(1, 2, 0).numpy()
    img = (x[0] * 255).round().byte().permute(1, 2, 0).numpy()
    with random_source(_Feed(u, z)):
        ref = np.uint8(reference_function(name)(Image.fromarray(img), severity))
    return ours, ref


@pytest.mark.parametrize("name", ["snow", "fog", "spatter"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_matches_published_code_on_identical_draws(photo, name, severity):
    ours, ref = _fed_pair(name, severity, photo, seed=severity)
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    # the published code truncates to uint8 where we round: one level apart at most, apart from rare boundary pixels
    assert _psnr(ours, ref) >= 40, (
        f"{name} s{severity}: PSNR {_psnr(ours, ref):.1f} dB, max diff {diff.max()}"
    )
    assert np.mean(diff > 1) < 0.01, f"{name} s{severity}: {np.mean(diff > 1):.2%} pixels differ by > 1 level"


def test_plasma_fractal_matches_published_generator():
    rs = np.random.default_rng(0)
    u = rs.random(64 * 64)
    ours = weather.plasma_fractal(_Feed(u, np.zeros(1)), 64, 1.7)[0].numpy()
    plasma = reference_function("fog").__globals__["plasma_fractal"]
    with random_source(_Feed(u, np.zeros(1))):
        ref = plasma(mapsize=64, wibbledecay=1.7)
    np.testing.assert_allclose(ours, ref, atol=2e-6)  # float32 map vs the float64 original
    assert ours.min() == 0.0 and ours.max() == 1.0


def test_fog_map_is_32_px_for_cifar_images():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feed = _Feed(np.random.default_rng(1).random(32 * 32 - 1), np.zeros(1), native_size=32, suite="cifar10-c")
    _apply("fog", x, 3, "cifar10-c", ctx=feed)
    assert feed.iu == 32 * 32 - 1, "fog must draw exactly one 32 x 32 plasma map for a 32 px image"


@pytest.mark.parametrize("suite,zoom", [("imagenet-c", 1.0), ("cifar10-c", 0.2)])
def test_frost_is_a_crop_of_an_installed_texture(suite, zoom):
    size = 224 if suite == "imagenet-c" else 32
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    u = np.array([0.55, 0.3, 0.8])  # texture index 2 (frost3.png), then the crop offsets
    out = CORRUPTIONS.get("frost")(x, get_suite(suite).param("frost", 4), _Feed(u, np.zeros(1), size, suite))
    tex = cv2.imread(frost_texture_paths()[2])[..., ::-1]
    if zoom != 1.0:
        tex = cv2.resize(tex, (0, 0), fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
    top, left = int(0.3 * (tex.shape[0] - size)), int(0.8 * (tex.shape[1] - size))
    crop = (
        torch.from_numpy(np.ascontiguousarray(tex[top : top + size, left : left + size])).permute(2, 0, 1)
        / 255
    )
    img_w, frost_w = get_suite(suite).param("frost", 4)
    torch.testing.assert_close(out[0], img_w * x[0] + frost_w * crop.float(), atol=1e-6, rtol=0)


def test_frost_never_draws_the_sixth_texture():
    textures = weather.frost_textures()
    assert len(textures) == 5
    sixth = cv2.imread(frost_texture_paths()[5])
    assert all(t.shape[1:] != sixth.shape[:2] for t in textures)


# --------------------------------------------------------------------------------------------- contract
def test_registered_as_weather():
    for name in NAMES:
        meta = CORRUPTIONS.meta(name)
        assert meta["category"] == "weather"
        assert meta["benchmark"] is (name != "spatter")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("suite", ["imagenet-c", "cifar10-c"])
def test_every_severity_runs_and_changes_the_image(photo, name, suite):
    x = photo if suite == "imagenet-c" else torch.nn.functional.interpolate(photo, size=(32, 32), mode="area")
    x = (x * 255).round() / 255
    x0 = x.clone()
    for severity in range(1, 6):
        out = _apply(name, x, severity, suite)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.isfinite(out).all()
        assert (out - x).abs().max() > 0, f"{name} s{severity} on {suite} left the image unchanged"
    assert torch.equal(x, x0), "input mutated"


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one_in_any_order(name):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 40, 36, generator=g)
    ids = [10, 11, 12, 13]
    batch = _apply(name, x, 5, ctx=_ctx(4, name, 5, ids=ids))
    for i in range(4):
        one = _apply(name, x[i : i + 1], 5, ctx=_ctx(1, name, 5, ids=[ids[i]]))
        torch.testing.assert_close(batch[i : i + 1], one, atol=1e-6, rtol=0)
    perm = [2, 0, 3, 1]
    shuffled = _apply(name, x[perm], 5, ctx=_ctx(4, name, 5, ids=[ids[p] for p in perm]))
    torch.testing.assert_close(shuffled, batch[perm], atol=1e-6, rtol=0)
    same = x[:1].expand(2, -1, -1, -1).contiguous()
    pair = _apply(name, same, 5, ctx=_ctx(2, name, 5, ids=[1, 2]))
    assert not torch.equal(pair[0], pair[1]), "different ids must give different draws"


@pytest.mark.parametrize("name", NAMES)
def test_grayscale_and_float64(name):
    x = torch.rand(2, 1, 33, 35, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = CORRUPTIONS.get(name)(x, get_suite("imagenet-c").param(name, 4), _ctx(2, name, 4))
    assert out.shape == x.shape and out.dtype == torch.float64


def test_spatter_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        weather.spatter(torch.rand(1, 3, 32, 32), (0.65, 0.3, 1, 0.65, 1.5, 2), _ctx(1, "spatter", 1))


def test_plasma_fractal_needs_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        weather.plasma_fractal(_ctx(1, "fog", 1), 48, 2.0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name):
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    cpu = _apply(name, x, 3)
    ctx = _ctx(2, name, 3)
    ctx.device = torch.device("cuda")
    gpu = _apply(name, x.cuda(), 3, ctx=ctx)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1 / 255 + 1e-6, rtol=0)
