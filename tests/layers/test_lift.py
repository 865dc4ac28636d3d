import copy
import pickle

import pytest
import torch
from torch import nn

from robustbench_lift.layers.lift import (
    LiftDetails,
    LiftDownPool2d,
    LiftingFunction,
    LiftUpPool2d,
    lift_down_pool2d,
    lift_up_pool2d,
    lifting_loss,
)


def _zero(t, axis):
    return torch.zeros_like(t)


def _randomise(layer: LiftDownPool2d, seed: int, scale: float = 1.0) -> LiftDownPool2d:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return layer


def _polyphase(x):
    return {
        "LL": x[..., 0::2, 0::2],
        "LH": x[..., 1::2, 0::2],
        "HL": x[..., 0::2, 1::2],
        "HH": x[..., 1::2, 1::2],
    }


def test_zero_predict_update_is_polyphase_subsampling(generator):
    x = torch.randn(2, 3, 6, 8, generator=generator)
    y, det = lift_down_pool2d(x, _zero, _zero, return_details=True)
    expected = _polyphase(x)
    for name, band in det.as_dict().items():
        torch.testing.assert_close(band, expected[name], atol=0, rtol=0, msg=f"band {name}")
    torch.testing.assert_close(y, sum(expected.values()), atol=1e-6, rtol=0)
    # A fresh layer (zero 1x1 weights) is the same: 4x the 2x2 average.
    layer = LiftDownPool2d(3)
    torch.testing.assert_close(layer(x), 4 * nn.functional.avg_pool2d(x, 2), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("bands", ["LL", "LH", "HL", "HH", ("LL", "HH"), "lh+hl"])
def test_band_subsets_select_polyphase_components(bands, generator):
    x = torch.randn(1, 2, 4, 6, generator=generator)
    expected = _polyphase(x)
    names = [bands] if isinstance(bands, str) and "+" not in bands else bands
    if isinstance(names, str):
        names = names.upper().split("+")
    torch.testing.assert_close(
        lift_down_pool2d(x, _zero, _zero, bands=bands), sum(expected[n] for n in names), atol=1e-6, rtol=0
    )


# Invertibility: a seeded sweep over random non-zero weights, even/odd sizes and channel counts.
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("channels", [1, 3, 8])
@pytest.mark.parametrize("size", [(8, 8), (7, 5), (6, 9), (1, 1), (2, 3), (13, 4)])
def test_up_inverts_down_for_random_weights(seed, channels, size):
    g = torch.Generator().manual_seed(1000 * seed + channels)
    kernel_size = (3, 5)[seed % 2]
    down = _randomise(LiftDownPool2d(channels, kernel_size=kernel_size), seed)
    assert all(p.abs().min() > 0 for p in down.parameters())
    x = torch.randn(2, channels, *size, generator=g) * 3
    y, det = down(x, return_details=True)
    assert y.shape == (2, channels, (size[0] + 1) // 2, (size[1] + 1) // 2)
    up = LiftUpPool2d(down)
    rec = up(det.ll, det)
    err = (rec - x).abs().max().item()
    assert rec.shape == x.shape and err <= 1e-5, f"max reconstruction error {err:.3g}"
    # The pooled output (sum of all bands) carries LL too.
    err = (up(det.ll_from_pooled(y), det) - x).abs().max().item()
    assert err <= 1e-5, f"max reconstruction error from the pooled output {err:.3g}"


def test_random_weights_are_not_subsampling(generator):
    # Guards the invertibility test: with non-zero P/U the bands really differ from polyphase components.
    down = _randomise(LiftDownPool2d(2), 0)
    x = torch.randn(1, 2, 8, 8, generator=generator)
    _, det = down(x, return_details=True)
    assert (det.hh - _polyphase(x)["HH"]).abs().max() > 1e-2


def test_up_uses_replaced_ll(generator):
    down = _randomise(LiftDownPool2d(2), 1)
    _, det = down(torch.randn(1, 2, 6, 6, generator=generator), return_details=True)
    a = LiftUpPool2d(down)(det.ll, det)
    b = LiftUpPool2d(down)(det.ll + 1.0, det)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_module_equals_functional(generator):
    down = _randomise(LiftDownPool2d(3, bands=("LL", "HL")), 2, scale=0.5)
    x = torch.randn(2, 3, 9, 6, generator=generator)
    torch.testing.assert_close(down(x), lift_down_pool2d(x, down.predict, down.update, bands=("LL", "HL")))
    y, det = down(x, return_details=True)
    torch.testing.assert_close(
        LiftUpPool2d(down)(det.ll, det), lift_up_pool2d(det.ll, det, down.predict, down.update)
    )
    # With a band subset the details still carry all four bands, so the round trip stays exact.
    torch.testing.assert_close(LiftUpPool2d(down)(det.ll_from_pooled(y), det), x, atol=1e-5, rtol=0)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    down = _randomise(LiftDownPool2d(2, kernel_size=3), 3, scale=0.5).double()
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def pooled_and_aux(t):
        y = down(t)  # training mode: also the auxiliary loss
        return y, down.aux_loss

    # fast_mode checks random projections of the Jacobian: far fewer evaluations, same kind of check.
    assert torch.autograd.gradcheck(pooled_and_aux, (x,), fast_mode=True)

    def round_trip(t):
        _, det = down(t, return_details=True)
        return LiftUpPool2d(down)(det.ll * 2, det)

    assert torch.autograd.gradcheck(round_trip, (x,), fast_mode=True)
    params = tuple(down.parameters())
    assert torch.autograd.gradcheck(
        lambda *ps: lift_down_pool2d(x.detach(), *_fns_from(ps), return_details=False), params, fast_mode=True
    )


def _fns_from(params):
    """P and U written out from the formulation with plain torch ops, from (depthwise, pointwise) weight pairs."""
    wp, pp, wu, pu = params

    def make(depthwise, pointwise):
        def apply(t, axis):
            k, c = depthwise.shape[-1], depthwise.shape[0]
            w = depthwise.view(c, 1, 1, k) if axis == -1 else depthwise.view(c, 1, k, 1)
            pad = (k // 2, k // 2, 0, 0) if axis == -1 else (0, 0, k // 2, k // 2)
            h = nn.functional.relu(
                nn.functional.conv2d(nn.functional.pad(t, pad, mode="reflect"), w, groups=c)
            )
            return torch.tanh(h * pointwise.view(1, c, 1, 1))

        return apply

    return make(wp, pp), make(wu, pu)


def test_lifting_function_matches_its_formula(generator):
    fn = LiftingFunction(2, kernel_size=3)
    with torch.no_grad():
        fn.pointwise.fill_(0.5)
    t = torch.randn(1, 2, 4, 5, generator=generator)
    expected_fn, _ = _fns_from((fn.depthwise, fn.pointwise, fn.depthwise, fn.pointwise))
    for axis in (-1, -2):
        torch.testing.assert_close(fn(t, axis), expected_fn(t, axis))
    with pytest.raises(ValueError, match="axis"):
        fn(t, 1)


def test_parameter_count_and_zero_init():
    layer = LiftDownPool2d(16, kernel_size=5)
    # One P/U pair per layer: 2 * (C*K + C).
    assert sum(p.numel() for p in layer.parameters()) == 2 * (16 * 5 + 16)
    _randomise(layer, 0)
    layer.reset_parameters()
    assert (
        torch.count_nonzero(layer.predict.pointwise) == 0 and torch.count_nonzero(layer.update.pointwise) == 0
    )
    assert torch.count_nonzero(layer.predict.depthwise) > 0


def test_aux_loss_and_lifting_loss(generator):
    x = torch.randn(2, 3, 8, 8, generator=generator)
    a, b = _randomise(LiftDownPool2d(3), 4, 0.3), LiftDownPool2d(3, lambda_u=0.5, lambda_p=0.0)
    model = nn.Sequential(a, nn.Conv2d(3, 3, 1), b, nn.Flatten())
    assert float(lifting_loss(model)) == 0.0
    model.train()
    model(x)
    _, det = lift_down_pool2d(x, a.predict, a.update, return_details=True, aux_loss=True)
    torch.testing.assert_close(a.aux_loss, 0.01 * det.loss_u + 0.1 * det.loss_p)
    total = lifting_loss(model)
    torch.testing.assert_close(total, a.aux_loss + b.aux_loss)
    total.backward()
    assert a.predict.depthwise.grad is not None and a.update.pointwise.grad.abs().sum() > 0
    # Zero-init layer: d = xo exactly, s = xe, so loss_p = mean of squared odd samples of each lift.
    _, det_b = lift_down_pool2d(x, _zero, _zero, return_details=True, aux_loss=True)
    xe, xo = x[..., 0::2], x[..., 1::2]
    lifts_u = [(xe - xo), (xe[..., 0::2, :] - xe[..., 1::2, :]), (xo[..., 0::2, :] - xo[..., 1::2, :])]
    lifts_p = [xo, xe[..., 1::2, :], xo[..., 1::2, :]]
    torch.testing.assert_close(det_b.loss_u, torch.stack([t.square().mean() for t in lifts_u]).mean())
    torch.testing.assert_close(det_b.loss_p, torch.stack([t.square().mean() for t in lifts_p]).mean())
    # Eval mode: no aux loss is kept.
    model.eval()
    model(x)
    assert a.aux_loss is None and float(lifting_loss(model)) == 0.0


def test_aux_loss_does_not_break_copies(generator):
    layer = LiftDownPool2d(2)
    layer(torch.randn(1, 2, 4, 4, generator=generator))
    assert layer.aux_loss is not None and layer.aux_loss.requires_grad
    clone = copy.deepcopy(layer)
    assert clone.aux_loss is None
    restored = pickle.loads(pickle.dumps(layer))
    assert restored.aux_loss is None


def test_up_pool_owns_no_parameters():
    down = LiftDownPool2d(4)
    model = nn.ModuleDict({"down": down, "up": LiftUpPool2d(down)})
    assert list(model.state_dict()) == [
        "down.predict.depthwise",
        "down.predict.pointwise",
        "down.update.depthwise",
        "down.update.pointwise",
    ]
    clone = copy.deepcopy(model)
    assert clone["up"].down is clone["down"]


def test_input_not_mutated_dtype_preserved(generator):
    layer = _randomise(LiftDownPool2d(2), 5, 0.5).double()
    x = torch.randn(1, 2, 5, 5, generator=generator, dtype=torch.float64)
    version, before = x._version, x.clone()
    y, det = layer(x, return_details=True)
    assert x._version == version and torch.equal(x, before)
    assert y.dtype == torch.float64 and y.device == x.device
    assert LiftUpPool2d(layer)(det.ll, det).dtype == torch.float64


def test_batched_equals_one_by_one(generator):
    layer = _randomise(LiftDownPool2d(3), 6, 0.5)
    x = torch.randn(3, 3, 7, 6, generator=generator)
    torch.testing.assert_close(layer(x), torch.cat([layer(x[i : i + 1]) for i in range(3)]))


def test_bad_input():
    layer = LiftDownPool2d(3)
    with pytest.raises(ValueError, match=r"4D.*\(3, 8, 8\)"):
        layer(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"expected 3 channels.*\(1, 4, 8, 8\)"):
        layer(torch.zeros(1, 4, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        layer(torch.zeros(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"unknown band 'XX'.*valid: all, LL, LH, HL, HH"):
        LiftDownPool2d(3, bands=("LL", "XX"))
    with pytest.raises(ValueError, match="twice"):
        LiftDownPool2d(3, bands="LL+ll")
    with pytest.raises(ValueError, match="at least one"):
        LiftDownPool2d(3, bands=())
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int, got 4"):
        LiftDownPool2d(3, kernel_size=4)
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        LiftDownPool2d(0)
    with pytest.raises(ValueError, match="lambda_p"):
        LiftDownPool2d(3, lambda_p=-1)
    with pytest.raises(TypeError, match="predict must be callable"):
        lift_down_pool2d(torch.zeros(1, 1, 2, 2), None, _zero)
    with pytest.raises(TypeError, match="LiftDownPool2d"):
        LiftUpPool2d(nn.MaxPool2d(2))
    down = LiftDownPool2d(3)
    _, det = down(torch.zeros(1, 3, 8, 8), return_details=True)
    with pytest.raises(ValueError, match=r"ll has shape \(1, 3, 2, 2\)"):
        lift_up_pool2d(torch.zeros(1, 3, 2, 2), det, down.predict, down.update)
    with pytest.raises(TypeError, match="LiftDetails"):
        LiftUpPool2d(down)(det.ll, {"LH": det.lh})
    only_hh = LiftDetails(det.ll, det.lh, det.hl, det.hh, (8, 8), (0, 0), bands=("HH",))
    with pytest.raises(ValueError, match="LL is not among"):
        only_hh.ll_from_pooled(det.hh)


def test_repr_is_readable():
    text = repr(nn.Sequential(LiftDownPool2d(8, kernel_size=3, bands="LL")))
    assert "LiftDownPool2d(\n    8, kernel_size=3, bands=LL, lambda_u=0.01, lambda_p=0.1" in text
