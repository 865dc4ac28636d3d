import math

import pytest
import torch
import torch.nn.functional as F

from robustbench_lift.layers.blur import BlurPool2d, MaxBlurPool2d, binomial_filter, blur_pool2d, pad_nd


@pytest.mark.parametrize("filt_size", range(1, 8))
def test_binomial_filter_rows(filt_size):
    filt = binomial_filter(filt_size, dtype=torch.float64)
    row = torch.tensor([math.comb(filt_size - 1, i) for i in range(filt_size)], dtype=torch.float64)
    torch.testing.assert_close(filt, torch.outer(row, row) / row.sum() ** 2)
    assert abs(float(filt.sum()) - 1.0) < 1e-12


def test_size_two_is_average_pooling(generator):
    x = torch.randn(2, 3, 8, 10, generator=generator)
    y = blur_pool2d(x, filt_size=2)
    err = (y - F.avg_pool2d(x, 2)).abs().max().item()
    assert err < 1e-6, f"max error {err:.3g}"


def test_size_one_is_subsampling(generator):
    x = torch.randn(2, 3, 7, 6, generator=generator)
    torch.testing.assert_close(blur_pool2d(x, filt_size=1), x[..., ::2, ::2], atol=0, rtol=0)


def test_size_three_reflect_reference(generator):
    # Written out: reflect pad 1, [1,2,1]/4 outer product, sample every other pixel.
    x = torch.randn(1, 2, 6, 5, generator=generator)
    pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    ref = F.conv2d(pad, torch.outer(k, k).expand(2, 1, 3, 3), groups=2)[..., ::2, ::2]
    torch.testing.assert_close(blur_pool2d(x, 3), ref)


@pytest.mark.parametrize("filt_size", range(1, 8))
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (8, 8), (9, 4)])
def test_shapes_all_sizes(filt_size, size):
    x = torch.randn(1, 2, *size)
    expected = (1, 2, math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    assert blur_pool2d(x, filt_size).shape == expected
    assert MaxBlurPool2d(2, filt_size).eval()(x).shape == expected


def test_constant_input_stays_constant():
    # A normalised filter with reflect padding keeps a constant image constant, even on tiny inputs.
    x = torch.full((1, 1, 3, 2), 2.5)
    for filt_size in range(1, 8):
        torch.testing.assert_close(blur_pool2d(x, filt_size), torch.full((1, 1, 2, 1), 2.5))


def test_pad_nd_extends_reflect_beyond_input():
    x = torch.arange(3.0).view(1, 1, 1, 3)
    # The mirror 0 1 2 1 | 0 1 2 | 1 0 1 continued periodically (period 2 * (3 - 1)).
    assert pad_nd(x, (4, 3, 0, 0), "reflect").flatten().tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1]
    torch.testing.assert_close(pad_nd(x, (1, 1, 0, 0), "reflect"), F.pad(x, (1, 1, 0, 0), mode="reflect"))
    assert pad_nd(torch.ones(1, 1, 1, 1), (0, 0, 2, 1), "reflect").shape == (1, 1, 4, 1)


def test_module_equals_functional(generator):
    x = torch.randn(2, 4, 9, 8, generator=generator)
    for pad_mode in ("reflect", "replicate", "zeros", "circular"):
        module = BlurPool2d(4, filt_size=5, pad_mode=pad_mode)
        torch.testing.assert_close(module(x), blur_pool2d(x, 5, pad_mode=pad_mode))
    assert "filt" not in BlurPool2d(4).state_dict()


def test_maxblur_matches_composition_on_even_sizes(generator):
    x = torch.randn(2, 3, 8, 6, generator=generator)
    ref = blur_pool2d(F.max_pool2d(x, 2, stride=1), 3)
    torch.testing.assert_close(MaxBlurPool2d(3)(x), ref)


def test_maxblur_odd_size_pads_last_row(generator):
    x = torch.randn(1, 1, 5, 5, generator=generator)
    padded = torch.cat([x, x[..., -1:, :]], dim=-2)
    padded = torch.cat([padded, padded[..., -1:]], dim=-1)
    torch.testing.assert_close(MaxBlurPool2d(1)(x), blur_pool2d(F.max_pool2d(padded, 2, stride=1), 3))


def test_gradcheck_float64():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: blur_pool2d(t, 4), (x,))
    assert torch.autograd.gradcheck(lambda t: blur_pool2d(t, 7), (x,))
    assert torch.autograd.gradcheck(BlurPool2d(2, 3).double(), (x,))


def test_input_not_mutated_dtype_preserved(generator):
    x = torch.randn(1, 3, 6, 6, generator=generator, dtype=torch.float64)
    version, before = x._version, x.clone()
    for module in (BlurPool2d(3, 5), MaxBlurPool2d(3)):
        y = module(x)
        assert y.dtype == torch.float64 and y.device == x.device
    assert blur_pool2d(x.half(), 3).dtype == torch.float16
    assert x._version == version and torch.equal(x, before)


def test_batched_equals_one_by_one(generator):
    x = torch.randn(3, 2, 7, 7, generator=generator)
    module = MaxBlurPool2d(2, 4)
    torch.testing.assert_close(module(x), torch.cat([module(x[i : i + 1]) for i in range(3)]))


def test_bad_input():
    with pytest.raises(ValueError, match="filt_size must be an int in 1..7, got 8"):
        BlurPool2d(3, filt_size=8)
    with pytest.raises(ValueError, match="filt_size must be an int in 1..7, got 0"):
        blur_pool2d(torch.zeros(1, 1, 4, 4), filt_size=0)
    with pytest.raises(
        ValueError, match=r"unknown pad_mode 'mirror'; valid: reflect, replicate, circular, zeros"
    ):
        BlurPool2d(3, pad_mode="mirror")
    with pytest.raises(ValueError, match="stride must be a positive int, got 0"):
        BlurPool2d(3, stride=0)
    with pytest.raises(ValueError, match=r"4D.*\(4, 4\)"):
        blur_pool2d(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"expected 3 channels, got input of shape \(1, 2, 4, 4\)"):
        BlurPool2d(3)(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"expected 3 channels"):
        MaxBlurPool2d(3)(torch.zeros(1, 2, 4, 4))
    with pytest.raises(TypeError, match="floating point"):
        blur_pool2d(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels must be a positive int"):
        BlurPool2d(0)


def test_repr():
    assert repr(BlurPool2d(8, 5)) == "BlurPool2d(8, filt_size=5, stride=2, pad_mode='reflect')"
