import math

import pytest
import torch
from torch import nn

from robustbench_lift.layers.pools import POOLS, Subsample2d, create_pool, list_pools, register_pool


def test_required_kinds_registered():
    assert {"max", "avg", "stride", "blur", "maxblur", "lift"} <= set(list_pools())
    assert list_pools(learned=True) == ["lift"]


@pytest.mark.parametrize("kind", list_pools())
@pytest.mark.parametrize("size", [(32, 32), (7, 5), (1, 1), (2, 3), (14, 15)])
def test_every_kind_halves_with_ceil(kind, size):
    pool = create_pool(kind, 4)
    x = torch.randn(2, 4, *size)
    y = pool(x)
    assert y.shape == (2, 4, math.ceil(size[0] / 2), math.ceil(size[1] / 2)), f"{kind}: {tuple(y.shape)}"
    assert y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("kind", list_pools())
def test_every_kind_is_differentiable_and_keeps_input(kind):
    pool = create_pool(kind, 3).double()
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    version = x._version
    pool(x).sum().backward()
    assert x._version == version
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_reference_values():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    torch.testing.assert_close(
        create_pool("max", 1)(x),
        x[..., 1::2, 1::2].new_tensor([[[[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]]]]),
    )
    # The clipped edge windows average only what they cover.
    avg = create_pool("avg", 1)(x)
    assert avg[0, 0, 0, 2] == (4.0 + 9.0) / 2 and avg[0, 0, 2, 2] == 24.0 and avg[0, 0, 0, 0] == 3.0
    torch.testing.assert_close(create_pool("stride", 1)(x), x[..., ::2, ::2])


def test_kwargs_reach_the_layer():
    assert create_pool("blur", 8, filt_size=5).filt_size == 5
    lift = create_pool("lift", 8, kernel_size=3, bands="LL")
    assert lift.kernel_size == 3 and lift.bands == ("LL",)
    with pytest.raises(TypeError, match=r"pool 'max' takes no options, got \['filt_size'\]"):
        create_pool("max", 8, filt_size=3)


def test_unknown_kind_lists_valid():
    with pytest.raises(
        ValueError, match=r"unknown pooling 'median'; valid: max, avg, stride, blur, maxblur, lift"
    ):
        create_pool("median", 3)
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        create_pool("max", 0)
    with pytest.raises(TypeError, match="name or a callable"):
        create_pool(3, 3)


def test_callable_kind_and_registration():
    assert isinstance(create_pool(lambda c: Subsample2d(2), 3), Subsample2d)
    with pytest.raises(ValueError, match="already registered"):
        register_pool("max")(lambda c: nn.MaxPool2d(2))
    name = "_test_min_pool"
    register_pool(name)(lambda c: Subsample2d(2))
    try:
        assert name in list_pools()
    finally:
        POOLS._items.pop(name)
        POOLS._meta.pop(name)


def test_public_exports():
    import robustbench_lift

    assert robustbench_lift.create_pool is create_pool and robustbench_lift.list_pools is list_pools
    assert {"LiftDownPool2d", "LiftUpPool2d", "BlurPool2d", "MaxBlurPool2d", "lifting_loss"} <= set(
        dir(robustbench_lift)
    )
    assert robustbench_lift.MaxBlurPool2d.__module__ == "robustbench_lift.layers.blur"


@pytest.mark.gpu
@pytest.mark.parametrize("kind", list_pools())
def test_cuda_matches_cpu(kind):
    torch.manual_seed(0)
    pool = create_pool(kind, 4)
    x = torch.randn(2, 4, 9, 8)
    expected = pool(x)
    out = pool.to("cuda")(x.to("cuda"))
    assert out.device.type == "cuda" and out.dtype == x.dtype
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-5)
