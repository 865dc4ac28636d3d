"""The fused CPU kernel of one lifting step (robustbench_lift/layers/kernel.py) against torch's lifting."""

import pytest
import torch
from test_lift_fast import TOL, _close, _pair, _run

from robustbench_lift.layers import kernel
from robustbench_lift.layers.lift import _fused_lifts

pytestmark = pytest.mark.skipif(
    kernel._compiler() is None, reason="no C++ compiler on this machine: LiftPool runs on torch operations"
)


@pytest.fixture(autouse=True)
def _kernel_on(monkeypatch):
    monkeypatch.setenv("RBL_LIFT_KERNEL", "1")


def test_fused_kernel_builds_where_a_compiler_is():  # the other tests rely on it
    """CI machines have g++: the kernel must build there (a silent fallback would hide a broken build)."""
    assert kernel.available(), kernel.build_error()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("axis", [-1, -2])
def test_lift_step_matches_torch_lifting(dtype, axis):
    """One fused step against the lifting written in torch operations, on a plane with ragged vector tails."""
    from robustbench_lift.layers.lift import LiftingFunction, _lift

    g = torch.Generator().manual_seed(3)
    predict, update = LiftingFunction(3, 5).to(dtype), LiftingFunction(3, 5).to(dtype)
    with torch.no_grad():
        for p in (*predict.parameters(), *update.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    x = torch.randn(2, 3, 22, 38, generator=g, dtype=dtype, requires_grad=True)
    s, d, xo = _lift(x, predict, update, axis)
    weights = (predict.depthwise.view(3, 5), predict.pointwise.view(3), update.depthwise.view(3, 5))
    s2, d2, su, sp = kernel.lift_step(x, *weights, update.pointwise.view(3), axis)
    gs, gd = torch.randn(s.shape, generator=g, dtype=dtype), torch.randn(d.shape, generator=g, dtype=dtype)
    params = [x, *predict.parameters(), *update.parameters()]
    ref_loss = (gs * s).sum() + (gd * d).sum() + 0.3 * (s - xo).square().sum() + 0.7 * d.square().sum()
    new_loss = (gs * s2).sum() + (gd * d2).sum() + 0.3 * su + 0.7 * sp
    for a, b, what in zip(
        (s2, d2, new_loss, *torch.autograd.grad(new_loss, params)),
        (s, d, ref_loss, *torch.autograd.grad(ref_loss, params)),
        ("s", "d", "loss", "grad x", "grad P taps", "grad P scale", "grad U taps", "grad U scale"),
    ):
        _close(a.reshape(b.shape), b, TOL[dtype], what)


@pytest.mark.parametrize("axis", [-1, -2])
def test_lift_step_gradcheck(axis):
    g = torch.Generator().manual_seed(axis + 5)
    args = [torch.randn(2, 2, 8, 10, generator=g, dtype=torch.float64)]
    args += [torch.randn(s, generator=g, dtype=torch.float64) for s in ((2, 5), (2,), (2, 5), (2,))]
    args = [a.requires_grad_(True) for a in args]
    assert torch.autograd.gradcheck(lambda *a: kernel.lift_step(*a, axis), args)


def test_fused_kernel_is_used_and_does_not_depend_on_threads():
    layer, _ = _pair(4, 5, "all", torch.float32, seed=2)
    x = torch.randn(3, 4, 16, 18, generator=torch.Generator().manual_seed(4))
    assert _fused_lifts(x, layer.predict, layer.update) is not None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(layer, x, "all")
        torch.set_num_threads(2)
        two = _run(layer, x, "all")
    finally:
        torch.set_num_threads(threads)
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_disabled_kernel_is_not_used(monkeypatch):
    monkeypatch.setenv("RBL_LIFT_KERNEL", "0")
    layer, _ = _pair(4, 5, "all", torch.float32, seed=2)
    assert _fused_lifts(torch.zeros(1, 4, 16, 16), layer.predict, layer.update) is None


def test_too_short_axes_use_torch_lifting():
    layer, _ = _pair(4, 5, "all", torch.float32, seed=2)
    # 4 rows: the vertical lifts see 2 even rows, not more than the 2-sample padding of a 5-tap filter.
    assert _fused_lifts(torch.zeros(1, 4, 4, 16), layer.predict, layer.update) is None
    assert _fused_lifts(torch.zeros(1, 4, 6, 16), layer.predict, layer.update) is not None


def test_failed_build_falls_back_to_torch_with_the_reason(monkeypatch, tmp_path, caplog):
    """A compiler that fails: one warning with the reason, and the layer still pools (on torch operations)."""
    monkeypatch.setattr(kernel, "_lib", None)
    monkeypatch.setattr(kernel, "_error", None)
    monkeypatch.setattr(kernel, "_tried", False)
    monkeypatch.setenv("CXX", "false")  # found on PATH, exits 1
    monkeypatch.setenv("RBL_CACHE_DIR", str(tmp_path / "fresh-cache"))  # nothing built there yet
    with caplog.at_level("WARNING", logger=kernel.__name__):
        assert not kernel.available()
    assert "false failed" in kernel.build_error()
    assert "using torch operations" in caplog.text
    layer, old = _pair(2, 5, "all", torch.float32, seed=1)
    x = torch.randn(1, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    assert _fused_lifts(x, layer.predict, layer.update) is None
    _close(layer(x), old(x), TOL[torch.float32], "torch fallback output")
