"""The optimised LiftPool against the pre-optimisation reference kept in benchmarks/_lift_reference.py."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from robustbench_lift.layers.lift import LiftDownPool2d, LiftUpPool2d, fast_tanh, reflect_filter

ROOT = Path(__file__).resolve().parents[2]


def _load_reference():
    name = "rbl_lift_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "_lift_reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


ref = _load_reference()

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
BAND_OPTIONS = ["all", "LL", "LH", "HL", "HH", "LL+HH", ("LH", "HL", "HH")]


def _pair(channels, kernel_size, bands, dtype, seed):
    """A new and a reference layer with the same random (non-zero) weights."""
    new = LiftDownPool2d(channels, kernel_size=kernel_size, bands=bands).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in new.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    old = ref.LiftDownPool2d(channels, kernel_size=kernel_size, bands=bands).to(dtype)
    old.load_state_dict(new.state_dict())
    assert all(p.abs().min() > 0 for p in new.parameters())
    return new, old


def _close(actual, expected, tol, what):
    # Relative to the tensor's scale once it exceeds 1: a parameter gradient sums thousands of terms.
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item()
    assert actual.shape == expected.shape and err <= tol * scale, (
        f"{what}: max abs error {err:.3g} > {tol:g} x scale {scale:.3g}"
    )


def _run(layer, x, bands):
    """Pooled output, bands, aux loss and the gradients of a loss using all of them."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y, det = layer(x, return_details=True)
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (y, det.ll, det.lh, det.hl, det.hh)]
    loss = sum((w * t).sum() for w, t in zip(weights, (y, det.ll, det.lh, det.hl, det.hh))) + layer.aux_loss
    loss.backward()
    out = {"y": y, "LL": det.ll, "LH": det.lh, "HL": det.hl, "HH": det.hh, "aux": layer.aux_loss}
    out.update({f"grad {n}": p.grad for n, p in layer.named_parameters()}, **{"grad x": x.grad})
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (13, 6), (3, 5), (21, 34)])
def test_matches_reference_training(dtype, kernel_size, size):
    new, old = _pair(3, kernel_size, "all", dtype, seed=kernel_size + size[0])
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(size[1]), dtype=dtype) * 2
    a, b = _run(new, x, "all"), _run(old, x, "all")
    assert a.keys() == b.keys()
    for key in a:
        _close(a[key], b[key], TOL[dtype], key)


@pytest.mark.parametrize("bands", BAND_OPTIONS)
def test_matches_reference_every_band_option(bands):
    new, old = _pair(4, 5, bands, torch.float32, seed=11)
    x = torch.randn(2, 4, 11, 10, generator=torch.Generator().manual_seed(3))
    a, b = _run(new, x, bands), _run(old, x, bands)
    for key in a:
        _close(a[key], b[key], TOL[torch.float32], key)
    # Eval mode, without details: the path the forward benchmark times.
    new.eval(), old.eval()
    with torch.no_grad():
        _close(new(x), old(x), TOL[torch.float32], "eval output")


def test_round_trip_and_gradcheck_float64():
    new, _ = _pair(2, 5, "all", torch.float64, seed=5)
    x = torch.randn(1, 2, 7, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, det = new(x, return_details=True)
    _close(LiftUpPool2d(new)(det.ll, det), x, 1e-10, "reconstruction")
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: (new(t), new.aux_loss), (xg,))


@pytest.mark.parametrize("axis", [-1, -2])
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_reflect_filter_gradcheck(axis, kernel_size):
    g = torch.Generator().manual_seed(kernel_size)
    t = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, kernel_size, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reflect_filter(a, b, axis), (t, w))


def test_reflect_filter_short_axis_falls_back():
    # A 2-sample axis is shorter than the 7-tap padding: the mirror continues periodically (pad_nd).
    t = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reflect_filter(a, b, -2), (t, w))


def test_fast_tanh_matches_tanh():
    x = torch.linspace(-30, 30, 10001, dtype=torch.float64, requires_grad=True)
    _close(fast_tanh(x), torch.tanh(x), 1e-14, "float64 tanh")
    _close(fast_tanh(x.float()), torch.tanh(x.float()), 1e-6, "float32 tanh")
    assert torch.autograd.gradcheck(fast_tanh, (x[::500].detach().clone().requires_grad_(True),))


@pytest.fixture(autouse=True, params=["fused-kernel", "torch-custom-backward", "torch-size-switch"])
def _fast_path(request, monkeypatch):
    """Run every test three times: with the fused CPU kernel (where the layer's sizes allow it), and on torch
    operations alone with the custom backward forced on every plane size and with the default size switch (small
    planes use torch's own convolution backward)."""
    import robustbench_lift.layers.lift as lift_module

    if request.param == "fused-kernel":
        monkeypatch.setenv("RBL_LIFT_KERNEL", "1")
    else:
        monkeypatch.setenv("RBL_LIFT_KERNEL", "0")
    if request.param == "torch-custom-backward":
        monkeypatch.setattr(lift_module, "FAST_MIN_PLANE", 0)
    yield
