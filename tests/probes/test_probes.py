import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from robustbench_lift.probes import (
    as_pipeline,
    list_probes,
    pool_layers,
    psnr,
    run_probe,
    ssim,
)
from robustbench_lift.probes.equivariance import _fourier_shift
from robustbench_lift.schema import RESULT_COLUMNS


class _DS:
    """n images (uint8, 3x32x32) with labels; ``flat`` makes every image one colour."""

    def __init__(self, n: int = 6, flat: bool = False) -> None:
        g = torch.Generator().manual_seed(1)
        if flat:
            self.x = (torch.rand(n, 3, 1, 1, generator=g) * 255).to(torch.uint8).expand(n, 3, 32, 32).clone()
        else:
            self.x = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        self.y = torch.arange(n) % 4

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class _GapNet(nn.Module):
    """1x1 conv + global average pool: exactly invariant to circular shifts."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


class _CornerNet(nn.Module):
    """Reads the top-left pixel only: not shift-invariant at all."""

    def forward(self, x):
        v = x[:, :, 0, 0]
        return torch.cat([v, v.mean(dim=1, keepdim=True)], dim=1)


def _pool_net(pool: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        pool(2),
        nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        pool(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


def test_registry():
    assert list_probes() == ["crop", "circular", "diagonal", "equivariance", "reconstruction"]
    assert list_probes("shift") == ["crop", "circular", "diagonal", "equivariance"]
    with pytest.raises(ValueError, match="unknown probe 'rotate'; valid: crop, circular"):
        run_probe("rotate", _GapNet(), _DS())


class _Record(nn.Module):
    """Remembers every input batch; predicts from the top-left pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        v = x[:, :, 0, 0]
        return torch.cat([v, v.mean(dim=1, keepdim=True)], dim=1)


def test_crop_consistency_default_is_the_aps_protocol_with_offsets_spanning_0_to_2s():
    ds = _DS()
    net = _Record()
    arrays, rows = run_probe("crop", net, ds, n_boot=50, pairs=3)
    cons = next(r for r in rows if r["metric"] == "consistency")
    assert cons["n"] == 18 and cons["severity"] == 3
    assert cons["suite"] == "shift" and cons["corruption"] == "crop"
    assert "APS random-crop protocol (Chaman & Dokmanic): zero-pad 3" in cons["protocol"]
    assert "[0,6) per axis" in cons["protocol"]
    assert all(tuple(r) == RESULT_COLUMNS for r in rows)
    off = arrays["offsets"]
    assert off.shape == (6, 3, 2, 2)
    # offsets span [0, 2S): both directions of shift relative to the uncropped image, relative shifts up to 2S-1
    assert off.min() == 0 and off.max() == 5
    # every crop is the zero-padded image at its offsets
    crops = torch.cat(net.seen)
    padded = torch.nn.functional.pad(ds.x.float() / 255, (3, 3, 3, 3))
    for k, (b, p, c) in enumerate(np.ndindex(6, 3, 2)):
        y0, x0 = off[b, p, c]
        torch.testing.assert_close(crops[k], padded[b, :, y0 : y0 + 32, x0 : x0 + 32])
    assert cons["value"] < 1.0  # the corner pixel moves


def test_crop_reflect_variant_keeps_its_own_name():
    arrays, rows = run_probe(
        "crop", _GapNet(), _DS(flat=True), n_boot=0, pairs=3, protocol="reflect", shift=4
    )
    cons = next(r for r in rows if r["metric"] == "consistency")
    assert cons["value"] == 1.0 and cons["severity"] == 4
    assert "reflect-pad 4" in cons["protocol"] and "[0,4)" in cons["protocol"]
    assert "not a published protocol" in cons["protocol"] and "APS" not in cons["protocol"]
    assert arrays["offsets"].min() >= 0 and arrays["offsets"].max() < 4
    with pytest.raises(ValueError, match="unknown crop protocol 'wrap'; valid: zhang, aps, reflect"):
        run_probe("crop", _GapNet(), _DS(), protocol="wrap")
    with pytest.raises(ValueError, match="needs crop_size"):
        run_probe("crop", _GapNet(), _DS(), protocol="zhang")


def test_crop_offsets_are_per_image_and_seeded():
    a1, _ = run_probe("crop", _CornerNet(), _DS(), batch_size=1, seed=3, n_boot=0)
    a2, _ = run_probe("crop", _CornerNet(), _DS(), batch_size=6, seed=3, n_boot=0)
    a3, _ = run_probe("crop", _CornerNet(), _DS(), batch_size=6, seed=4, n_boot=0)
    np.testing.assert_array_equal(a1["offsets"], a2["offsets"])
    np.testing.assert_array_equal(a1["agree"], a2["agree"])
    assert not np.array_equal(a1["offsets"], a3["offsets"])


def test_crop_zhang_protocol_crops_the_larger_image():
    ds = _DS(n=2)
    arrays, rows = run_probe("crop", _GapNet(), ds, crop_size=24, n_boot=0)
    assert arrays["offsets"].max() < 8
    assert (
        "Zhang-style crops of real image content: two 24 px crops of the 32x32 image" in rows[0]["protocol"]
    )
    assert "Zhang 2019" not in rows[0]["protocol"]  # his name only for 224 px crops of the 256 px image
    with pytest.raises(ValueError, match="crop_size 32 must be smaller"):
        run_probe("crop", _GapNet(), ds, crop_size=32)
    with pytest.raises(ValueError, match="crop_size is for 'zhang' only"):
        run_probe("crop", _GapNet(), ds, crop_size=24, protocol="aps")


def test_circular_consistency_invariant_and_not():
    arrays, rows = run_probe("circular", _GapNet(), _DS(), n_boot=0, pairs=4)
    cons = next(r for r in rows if r["metric"] == "consistency")
    assert cons["value"] == 1.0 and cons["severity"] == 3
    assert "two rolls in [-3,3) per axis (Chaman & Dokmanic)" in cons["protocol"]
    assert arrays["shifts"].min() >= -3 and arrays["shifts"].max() < 3
    _, rows = run_probe("circular", _CornerNet(), _DS(), n_boot=0, pairs=4)
    assert next(r for r in rows if r["metric"] == "consistency")["value"] < 1.0
    with pytest.raises(ValueError, match="pairs must be a positive int"):
        run_probe("circular", _GapNet(), _DS(), pairs=0)


def test_diagonal_curve():
    arrays, rows = run_probe("diagonal", _GapNet(), _DS(), shift=5, n_boot=0)
    assert arrays["pred"].shape == (6, 6)
    assert sorted({r["severity"] for r in rows}) == [0, 1, 2, 3, 4, 5]
    agreement = [r["value"] for r in rows if r["metric"] == "agreement"]
    acc = [r["value"] for r in rows if r["metric"] == "accuracy"]
    assert agreement == [1.0] * 6 and len(set(acc)) == 1  # circular shifts: an invariant net is flat
    assert "circular roll" in rows[0]["protocol"] and "not Zhang's" in rows[0]["protocol"]
    arrays, rows = run_probe("diagonal", _CornerNet(), _DS(), shift=5, mode="reflect", n_boot=0)
    agreement = [r["value"] for r in rows if r["metric"] == "agreement"]
    assert agreement[0] == 1.0 and min(agreement[1:]) < 1.0
    assert "reflect padding" in rows[0]["protocol"]
    with pytest.raises(
        ValueError, match="unknown diagonal shift mode 'wrap'; valid: zhang, circular, reflect"
    ):
        run_probe("diagonal", _GapNet(), _DS(), mode="wrap")


def test_diagonal_zhang_curve_crops_real_content_at_0_to_s():
    ds = _DS(n=2)
    net = _Record()
    arrays, rows = run_probe("diagonal", net, ds, crop_size=24, n_boot=0)
    assert arrays["pred"].shape == (2, 9)  # s = 0..32-24
    assert sorted({r["severity"] for r in rows}) == list(range(9))
    assert (
        "Zhang-style" in rows[0]["protocol"]
        and "24 px crops at (s, s) of the 32x32 image" in rows[0]["protocol"]
    )
    x = ds.x.float() / 255
    for s, seen in enumerate(net.seen):
        torch.testing.assert_close(seen, x[:, :, s : s + 24, s : s + 24])


def test_fourier_shift_integer_equals_roll():
    f = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        _fourier_shift(f, 2.0, 2.0), torch.roll(f, (2, 2), dims=(-2, -1)), atol=1e-5, rtol=0
    )


def test_equivariance_circular_avgpool_net_is_exact_at_stride_multiples():
    net = _pool_net(nn.AvgPool2d)
    assert [n for n, _ in pool_layers(net)] == ["2", "5"]
    arrays, rows = run_probe("equivariance", net, _DS(), shifts=[4, 8], n_boot=0)
    assert {r["metric"] for r in rows} == {"equivariance_error:2", "equivariance_error:5"}
    assert max(r["value"] for r in rows) < 1e-5
    assert "cumulative stride 4" in next(r for r in rows if r["metric"].endswith(":5"))["protocol"]


def test_equivariance_maxpool_net_misaligned_shift():
    arrays, rows = run_probe("equivariance", _pool_net(nn.MaxPool2d), _DS(), n_boot=0)
    assert sorted({r["severity"] for r in rows}) == [1, 4]  # default: 1 and the largest stride
    misaligned = [r for r in rows if r["severity"] == 1]
    assert min(r["value"] for r in misaligned) > 0.05
    assert "Fourier" in misaligned[0]["protocol"]
    aligned = [r["value"] for r in rows if r["severity"] == 4]
    assert max(aligned) < 1e-5  # circular convs + max pool are exactly equivariant to aligned rolls
    with pytest.raises(ValueError, match="the model has no pooling layer"):
        run_probe("equivariance", _GapNet(), _DS())


def test_psnr_ssim_reference_values():
    x = torch.zeros(1, 1, 16, 16)
    assert float(psnr(x, x + 0.1)[0]) == pytest.approx(20.0)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 20, 24, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ours = ssim(a, b).numpy()
    ref = [
        structural_similarity(
            a[i].numpy(),
            b[i].numpy(),
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )  # fmt: skip
        for i in range(2)
    ]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_reconstruction_lift_is_exact_and_others_are_not():
    arrays, rows = run_probe("reconstruction", _pool_net(nn.MaxPool2d), _DS(), n_boot=0)
    assert arrays["lift__max_abs_error"].max() < 1e-5
    assert arrays["lift__feature_max_abs_error"].max() < 1e-5
    value = {(r["corruption"], r["metric"]): r["value"] for r in rows}
    assert value[("lift", "psnr")] > 100 and value[("lift", "ssim")] == pytest.approx(1.0)
    for pair in ("max", "avg", "blur"):
        assert value[(pair, "psnr")] < 40 and value[(pair, "ssim")] < 0.99
        assert np.isfinite(value[(pair, "feature_psnr")])
    assert {r["suite"] for r in rows} == {"reconstruction"} and {r["severity"] for r in rows} == {0}
    assert "first conv (0)" in next(r for r in rows if r["metric"] == "feature_psnr")["protocol"]
    with pytest.raises(ValueError, match="unknown reconstruction pair"):
        run_probe("reconstruction", _GapNet(), _DS(), pairs=["bilinear"])


def test_pipeline_shifts_before_normalisation():
    calls = []

    def normalize(x):
        calls.append(float(x.min()) >= 0.0 and float(x.max()) <= 1.0)
        return (x - 0.5) / 0.25

    run_probe("circular", _GapNet(), _DS(n=2), preprocess=normalize, n_boot=0)
    assert calls and all(calls)
    with pytest.raises(TypeError, match="preprocess must be"):
        as_pipeline(3)
