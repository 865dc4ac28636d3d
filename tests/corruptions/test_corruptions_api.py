"""The corruption engine's public API: every corruption x severity x suite, determinism, dtypes, bad input, suites."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from corruptions import corrupt, get_suite, list_corruptions, list_suites, load_suite
from corruptions.suites import ALL_CORRUPTIONS, BENCHMARK, HELD_OUT, SuiteSizeWarning

SIZES = {"cifar10-c": 32, "imagenet-c": 64}
# (suite, corruption, severity) cells that leave an image unchanged by design
IDENTITY = {("cifar10-c", "pixelate", 1)}  # 32 * 0.95 -> 30 px: the BOX average of a smooth image survives
STOCHASTIC = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "spatter",
    "elastic_transform",
]


def _images(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Smooth, textured uint8 images (a natural-ish mix of gradients and a pattern)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        phase = torch.rand(channels, 1, 1, generator=g) * 6.0
        freq = 2.0 + torch.rand(channels, 1, 1, generator=g) * 6.0
        img = 0.5 + 0.35 * torch.sin(freq * (xx + 0.7 * yy) * 3.14159 + phase) * torch.cos(freq * yy * 2.0)
        out.append(img)
    return (torch.stack(out).clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def batches() -> dict[str, torch.Tensor]:
    return {suite: _images(2, size) for suite, size in SIZES.items()}


def test_registry_matches_the_canonical_lists():
    assert list_corruptions() == list(ALL_CORRUPTIONS)
    assert list_corruptions(benchmark=True) == list(BENCHMARK)
    assert list_corruptions(benchmark=False) == list(HELD_OUT)
    assert list_corruptions(category="noise") == [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "speckle_noise",
    ]
    assert list_corruptions(category="weather") == ["snow", "frost", "fog", "brightness", "spatter"]
    assert list_suites() == ["imagenet-c", "cifar10-c", "imagecorruptions"]
    with pytest.raises(ValueError, match="valid: noise, blur, weather, digital"):
        list_corruptions(category="colour")


@pytest.mark.parametrize("suite", ["cifar10-c", "imagenet-c"])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_and_severity_runs_and_changes_the_image(batches, suite, name):
    x = batches[suite]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SuiteSizeWarning)
        for severity in range(1, 6):
            y = corrupt(x, name, severity, suite=suite, seed=3)
            assert y.shape == x.shape and y.dtype == torch.uint8
            changed = (y.int() - x.int()).abs().sum().item()
            if (suite, name, severity) not in IDENTITY:
                assert changed > 0, f"{suite}/{name}/{severity} left the image unchanged"


def test_float_dtypes_and_rank3_preserved():
    x8 = _images(2, 32)
    for dtype in (torch.float16, torch.float32, torch.float64):
        x = x8.to(dtype) / 255
        before = x.clone()
        version = x._version
        y = corrupt(x, "gaussian_blur", 2, suite="cifar10-c")
        assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
        assert x._version == version and torch.equal(x, before)
        # 8-bit levels (float16 holds k / 255 only to ~0.12 of a level)
        levels = y.double() * 255
        assert (levels - levels.round()).abs().max() < (0.2 if dtype == torch.float16 else 1e-3)
        single = corrupt(x[1], "gaussian_blur", 2, suite="cifar10-c", ids=[1])
        assert single.shape == x[1].shape
        torch.testing.assert_close(single, y[1])


def test_uint8_and_float_inputs_agree():
    x8 = _images(2, 32)
    a = corrupt(x8, "gaussian_noise", 3, suite="cifar10-c", seed=5)
    b = corrupt(x8.float() / 255, "gaussian_noise", 3, suite="cifar10-c", seed=5)
    assert torch.equal(a, (b * 255).round().to(torch.uint8))


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_batched_equals_one_by_one_and_order_free(name):
    x = _images(3, 32, seed=1)
    ids = [10, 11, 12]
    full = corrupt(x, name, 3, suite="cifar10-c", seed=7, ids=ids)
    for i in range(3):
        one = corrupt(x[i : i + 1], name, 3, suite="cifar10-c", seed=7, ids=[ids[i]])
        assert torch.equal(one[0], full[i]), f"{name}: image {i} differs alone"
    perm = [2, 0, 1]
    shuffled = corrupt(x[perm], name, 3, suite="cifar10-c", seed=7, ids=[ids[p] for p in perm])
    assert torch.equal(shuffled, full[perm])


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seeds_change_stochastic_corruptions(name):
    x = _images(2, 32, seed=2)
    a = corrupt(x, name, 4, suite="cifar10-c", seed=0)
    b = corrupt(x, name, 4, suite="cifar10-c", seed=1)
    assert not torch.equal(a, b)
    assert torch.equal(a, corrupt(x, name, 4, suite="cifar10-c", seed=0))


def test_default_ids_are_batch_indices():
    x = _images(2, 32)
    kw = {"suite": "cifar10-c", "seed": 2}
    assert torch.equal(corrupt(x, "impulse_noise", 2, **kw), corrupt(x, "impulse_noise", 2, ids=[0, 1], **kw))
    assert torch.equal(
        corrupt(x, "impulse_noise", 2, ids=torch.tensor([0, 1]), **kw),
        corrupt(x, "impulse_noise", 2, ids=[0, 1], **kw),
    )
    assert not torch.equal(
        corrupt(x, "impulse_noise", 2, **kw), corrupt(x, "impulse_noise", 2, ids=[5, 6], **kw)
    )


def test_contrast_closed_form():
    x = _images(2, 112).float() / 255
    for severity, c in enumerate(get_suite("imagenet-c").params["contrast"], start=1):
        mean = x.mean(dim=(2, 3), keepdim=True)
        expected = (((x - mean) * c + mean).clamp(0, 1) * 255).floor() / 255
        torch.testing.assert_close(corrupt(x, "contrast", severity), expected, atol=1.01 / 255, rtol=0)


def test_brightness_closed_form_gray_and_colour():
    # a gray pixel (all channels equal) has S = 0: brightness adds c to every channel
    x = torch.full((1, 3, 32, 32), 0.4)
    y = corrupt(x, "brightness", 2, suite="cifar10-c")
    torch.testing.assert_close(y, torch.full_like(x, 127 / 255))  # 127.5 truncated, as stored
    # a colour pixel keeps hue and saturation: every channel scales by V' / V
    x = torch.zeros(1, 3, 112, 112)
    x[:, 0], x[:, 1], x[:, 2] = 0.6, 0.3, 0.15
    y = corrupt(x, "brightness", 3)  # imagenet-c: +0.3 -> V' = 0.9, ratio 1.5
    expected = torch.tensor([0.9, 0.45, 0.225]).view(1, 3, 1, 1).expand_as(x)
    torch.testing.assert_close(y, (expected * 255).floor() / 255)


def test_hsv_ops_match_scikit_image():
    skcolor = pytest.importorskip("skimage.color")
    x = _images(1, 112, seed=4)
    a = x[0].permute(1, 2, 0).numpy() / 255.0
    for severity, (mul, add) in enumerate(get_suite("imagenet-c").params["saturate"], start=1):
        hsv = skcolor.rgb2hsv(a)
        hsv[..., 1] = np.clip(hsv[..., 1] * mul + add, 0, 1)
        ref = np.clip(skcolor.hsv2rgb(hsv), 0, 1)
        ours = corrupt(x, "saturate", severity)[0].permute(1, 2, 0).numpy() / 255.0
        assert np.abs(ours - ref).max() <= 1.01 / 255  # truncated to 8 bits


def test_grayscale_images():
    x = _images(2, 32, channels=1)
    for name in ALL_CORRUPTIONS:
        y = corrupt(x, name, 3, suite="cifar10-c", seed=1)
        assert y.shape == x.shape, name
    # brightness of a gray image is a plain clipped shift
    torch.testing.assert_close(
        corrupt(x, "brightness", 5, suite="cifar10-c").int(),
        (x.int() + round(0.3 * 255)).clamp(max=255),
        atol=1,
        rtol=0,
    )
    # grayscale == the mean of the replicated-RGB result for the HSV ops
    rgb = corrupt(x.expand(-1, 3, -1, -1).contiguous(), "saturate", 4, suite="cifar10-c").float()
    gray = corrupt(x, "saturate", 4, suite="cifar10-c").float()
    assert (gray - rgb.mean(dim=1, keepdim=True)).abs().max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"images": np.zeros((1, 3, 32, 32))}, TypeError, "torch.Tensor"),
        ({"images": torch.zeros(1, 3, 32, 32, dtype=torch.int32)}, ValueError, "uint8"),
        ({"images": torch.zeros(3, 32)}, ValueError, "shape"),
        ({"images": torch.zeros(1, 2, 32, 32)}, ValueError, "1 or 3 channels"),
        ({"images": torch.full((1, 3, 32, 32), 1.5)}, ValueError, r"\[0, 1\]"),
        ({"images": torch.full((1, 3, 32, 32), float("nan"))}, ValueError, r"\[0, 1\]"),
        ({"name": "blizzard"}, ValueError, "valid: gaussian_noise, shot_noise"),
        ({"severity": 0}, ValueError, "1..5"),
        ({"severity": 6}, ValueError, "1..5"),
        ({"severity": 2.0}, ValueError, "1..5"),
        ({"suite": "mnist-c"}, ValueError, "valid: imagenet-c, cifar10-c"),
        ({"backend": "cuda"}, ValueError, "valid: torch, reference"),
        ({"ids": [0]}, ValueError, "one entry per image"),
        ({"ids": [0, 1.5]}, ValueError, "integers"),
        ({"seed": "x"}, TypeError, "seed"),
    ],
)
def test_bad_input_raises_clearly(kwargs, exc, match):
    args = {"images": torch.zeros(2, 3, 32, 32), "name": "contrast", "severity": 1}
    args.update(kwargs)
    images, name, severity = args.pop("images"), args.pop("name"), args.pop("severity")
    args.setdefault("suite", "cifar10-c")
    with pytest.raises(exc, match=match):
        corrupt(images, name, severity, **args)


def test_reference_backend_rejects_other_suites():
    with pytest.raises(ValueError, match="'imagenet-c', 'imagecorruptions'"):
        corrupt(torch.zeros(1, 3, 32, 32), "contrast", 1, suite="cifar10-c", backend="reference")
    x = _images(1, 32)
    a = corrupt(x, "elastic_transform", 2, suite="imagecorruptions", backend="reference", seed=4)
    b = corrupt(x, "elastic_transform", 2, suite="imagenet-c", backend="reference", seed=4)
    assert torch.equal(a, b)  # one package, one parameter table


def test_size_warning_far_from_native_size():
    with pytest.warns(SuiteSizeWarning, match="224 px"):
        corrupt(torch.zeros(1, 3, 32, 32), "contrast", 1, suite="imagenet-c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corrupt(torch.zeros(1, 3, 48, 40), "contrast", 1, suite="cifar10-c")


def test_empty_batch():
    x = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert corrupt(x, "gaussian_noise", 1, suite="cifar10-c").shape == x.shape


# ------------------------------------------------------------------------------------------------------ suites
def test_builtin_tables_follow_the_spec():
    inet, cifar = get_suite("imagenet-c"), get_suite("cifar10-c")
    assert inet.native_size == 224 and cifar.native_size == 32
    assert inet.benchmark == BENCHMARK and inet.held_out == HELD_OUT
    for suite in (inet, cifar):
        assert set(suite.params) == set(ALL_CORRUPTIONS)
        assert all(len(v) == 5 for v in suite.params.values())
    assert inet.param("glass_blur", 5) == (1.5, 4, 2)
    assert cifar.param("snow", 3) == (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9)
    assert inet.param("shot_noise", 1) == 60 and cifar.param("shot_noise", 1) == 500
    assert inet.param("elastic_transform", 1) == pytest.approx((488, 170.8, 24.4))
    assert cifar.param("elastic_transform", 2) == pytest.approx((1.6, 6.4, 2.24))
    # np.arange(1, 1.11, 0.01) has 12 entries (floating point puts 1.11 below the stop)
    assert len(inet.param("zoom_blur", 1)) == 12 and len(inet.param("zoom_blur", 5)) == 11
    assert len(cifar.param("zoom_blur", 5)) == 26 and cifar.param("zoom_blur", 1)[-1] == pytest.approx(1.06)
    assert inet.param("saturate", 5) == (20, 0.2) and cifar.param("jpeg_compression", 5) == 40


def test_imagecorruptions_suite_is_imagenet_c_with_the_package_elastic_transform():
    inet, pkg = get_suite("imagenet-c"), get_suite("imagecorruptions")
    assert pkg.native_size == 224 and pkg.benchmark == BENCHMARK and pkg.held_out == HELD_OUT
    assert (inet.elastic_variant, pkg.elastic_variant) == ("hendrycks", "imagecorruptions")
    assert get_suite("cifar10-c").elastic_variant == "hendrycks"
    assert {k: v for k, v in pkg.params.items() if k != "elastic_transform"} == {
        k: v for k, v in inet.params.items() if k != "elastic_transform"
    }
    alphas = [pkg.param("elastic_transform", s)[0] for s in range(1, 6)]
    assert alphas == pytest.approx([12.5, 16.25, 21.25, 25.0, 30.0])
    assert {pkg.param("elastic_transform", s)[1:] for s in range(1, 6)} == {(0.01, 0.005)}
    assert load_suite(pkg.to_dict()) == pkg and pkg.to_dict()["elastic_variant"] == "imagecorruptions"
    x = _images(2, 160, seed=3)
    for name in ("fog", "gaussian_noise"):  # same table, same seeds: same images
        assert torch.equal(corrupt(x, name, 3, suite=pkg, seed=1), corrupt(x, name, 3, suite=inet, seed=1))
    a = corrupt(x, "elastic_transform", 3, suite=pkg, seed=1)
    assert not torch.equal(a, corrupt(x, "elastic_transform", 3, suite=inet, seed=1))
    assert not torch.equal(a, x)


def test_imagecorruptions_elastic_is_deterministic_per_image():
    x = _images(3, 120, seed=4)
    ids = [5, 6, 7]
    full = corrupt(x, "elastic_transform", 5, suite="imagecorruptions", seed=2, ids=ids)
    for i in range(3):
        one = corrupt(x[i : i + 1], "elastic_transform", 5, suite="imagecorruptions", seed=2, ids=[ids[i]])
        assert torch.equal(one[0], full[i])
    perm = [1, 2, 0]
    shuffled = corrupt(
        x[perm], "elastic_transform", 5, suite="imagecorruptions", seed=2, ids=[ids[p] for p in perm]
    )
    assert torch.equal(shuffled, full[perm])
    gray = corrupt(x[:, :1], "elastic_transform", 5, suite="imagecorruptions", seed=2, ids=ids)
    assert gray.shape == (3, 1, 120, 120)


def test_elastic_variant_in_user_suites():
    mine = load_suite({"name": "mine", "base": "cifar10-c", "elastic_variant": "imagecorruptions",
                       "params": {"elastic_transform": [[10, 0.02, 0.01]] * 5}})  # fmt: skip
    assert mine.elastic_variant == "imagecorruptions" and mine.native_size == 32
    assert load_suite({"name": "inherit", "base": "imagecorruptions"}).elastic_variant == "imagecorruptions"
    x = _images(2, 32, seed=6)
    y = corrupt(x, "elastic_transform", 1, suite=mine, seed=0)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_user_suite_from_dict_and_file(tmp_path):
    spec = {
        "name": "strong-noise",
        "base": "cifar10-c",
        "corruptions": ["gaussian_noise", "saturate"],
        "params": {"gaussian_noise": [0.2, 0.3, 0.4, 0.5, 0.6]},
    }
    suite = load_suite(spec)
    assert suite.benchmark == ("gaussian_noise",) and suite.held_out == ("saturate",)
    assert suite.native_size == 32 and suite.param("gaussian_noise", 5) == 0.6
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(spec))
    assert load_suite(path) == suite
    assert load_suite(suite.to_dict()) == suite
    x = _images(2, 32)
    a = corrupt(x, "gaussian_noise", 1, suite=spec, seed=3)
    b = corrupt(x, "gaussian_noise", 1, suite=suite, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, corrupt(x, "gaussian_noise", 1, suite="cifar10-c", seed=3))
    assert list_corruptions(suite) == ["gaussian_noise", "saturate"]
    with pytest.raises(ValueError, match="not in suite|for suite"):
        corrupt(x, "contrast", 1, suite=suite)
    standalone = load_suite(
        {"name": "mine", "native_size": 64, "params": {"contrast": [0.9, 0.8, 0.7, 0.6, 0.5]}}
    )
    assert standalone.benchmark == ("contrast",)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"base": "cifar10-c"}, "name"),
        ({"name": "a", "base": "mnist-c"}, "valid: imagenet-c, cifar10-c"),
        ({"name": "a", "params": {"contrast": [1, 2, 3, 4, 5]}}, "native_size"),
        (
            {"name": "a", "base": "cifar10-c", "params": {"blizzard": [1] * 5}},
            "unknown corruption 'blizzard'",
        ),
        ({"name": "a", "base": "cifar10-c", "params": {"contrast": [1, 2, 3]}}, "5 parameters"),
        ({"name": "a", "base": "cifar10-c", "params": {"glass_blur": [[1, 2]] * 5}}, "expected 3 numbers"),
        ({"name": "a", "base": "cifar10-c", "params": {"contrast": ["x"] * 5}}, "expected a number"),
        ({"name": "a", "base": "cifar10-c", "colour": 1}, "unknown keys colour"),
        (
            {"name": "a", "base": "cifar10-c", "elastic_variant": "scipy"},
            "valid: hendrycks, imagecorruptions",
        ),
        ({"name": "a", "base": "cifar10-c", "benchmark": ["contrast"], "held_out": ["contrast"]}, "both"),
        ({"name": "a", "native_size": 32, "params": {}, "benchmark": ["contrast"]}, "without parameters"),
    ],
)
def test_bad_user_suites(spec, match):
    with pytest.raises(ValueError, match=match):
        load_suite(spec)


def test_bad_suite_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_suite(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_suite(tmp_path / "missing.json")
