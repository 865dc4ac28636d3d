import numpy as np
import pytest
import torch
from skimage.color import hsv2rgb, rgb2hsv

from corruptions.perturbations import (
    PERTURBATIONS,
    is_noise_perturbation,
    iter_perturb,
    list_perturbations,
    num_frames,
    perturb,
)

TEST = ["gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow", "brightness", "translate", "rotate",
        "tilt", "scale"]  # fmt: skip
VALIDATION = ["speckle_noise", "gaussian_blur", "spatter", "shear"]
FRAMES = {
    "cifar10-p": {"motion_blur": 21, "translate": 16},
    "imagenet-p": {"translate": 41},
}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    # smooth random images (a few blobs), so blur and geometric changes are visible
    base = torch.rand(2, 3, 8, 8, generator=g)
    up = torch.nn.functional.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)
    return (up * 255).round().to(torch.uint8)


def test_registry_splits_match_spec():
    assert sorted(list_perturbations(split="test")) == sorted(TEST)
    assert sorted(list_perturbations(split="validation")) == sorted(VALIDATION)
    assert len(list_perturbations(suite="imagenet-p")) == 14
    assert [n for n in list_perturbations() if is_noise_perturbation(n)] == [
        "gaussian_noise",
        "shot_noise",
        "speckle_noise",
    ]


@pytest.mark.parametrize("suite", ["cifar10-p", "imagenet-p"])
@pytest.mark.parametrize("name", TEST + VALIDATION)
def test_shapes_frames_range(images, name, suite):
    out = perturb(images, name, suite=suite, seed=1)
    t = FRAMES[suite].get(name, 31)
    assert num_frames(name, suite) == t
    assert out.shape == (2, t, 3, 32, 32)
    assert out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # 8-bit levels
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)
    # the sequence changes over time (imagenet-p blur sigmas shrink to nothing at 1/8 of its native size)
    if suite == "cifar10-p":
        assert float((out[:, 1:] - out[:, :-1]).abs().amax()) > 0


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "speckle_noise"])
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_noise_frame0_clean_and_difficulty_grows(images, name, difficulty):
    out = perturb(images, name, difficulty=difficulty, seed=0)
    torch.testing.assert_close(out[:, 0], images.float() / 255, atol=0, rtol=0)
    assert not torch.equal(out[:, 1], out[:, 0])
    if difficulty < 3:
        harder = perturb(images, name, difficulty=difficulty + 1, seed=0)
        err = (out[:, 1:] - out[:, :1]).abs().mean()
        err_harder = (harder[:, 1:] - harder[:, :1]).abs().mean()
        assert err_harder > err


@pytest.mark.parametrize("name", ["gaussian_noise", "snow", "spatter", "zoom_blur", "tilt"])
def test_batched_equals_one_by_one_and_frame_subsets(images, name):
    ids = [10, 42]
    full = perturb(images, name, seed=5, ids=ids)
    for i in range(2):
        one = perturb(images[i : i + 1], name, seed=5, ids=[ids[i]])
        torch.testing.assert_close(one[0], full[i], atol=1e-6, rtol=0)
    sub = perturb(images, name, seed=5, ids=ids, frames=slice(3, 9, 2))
    torch.testing.assert_close(sub, full[:, 3:9:2], atol=1e-6, rtol=0)
    chunks = list(iter_perturb(images, name, chunk=7, seed=5, ids=ids))
    assert [len(k) for k, _ in chunks] == [7, 7, 7, 7, 3]
    torch.testing.assert_close(torch.cat([c for _, c in chunks], dim=1), full, atol=1e-6, rtol=0)
    other_seed = perturb(images, name, seed=6, ids=ids)
    if name in ("gaussian_noise", "snow", "spatter"):
        assert not torch.equal(other_seed, full)


@pytest.mark.parametrize("k", [0, 3, 7, 15])
def test_translate_shifts_by_the_right_number_of_pixels(images, k):
    out = perturb(images, "translate", frames=[k], quantize=False)[:, 0]
    shift = k - 7  # CIFAR-10-P: -7 .. +8 px
    x = images.float() / 255
    w = x.shape[-1]
    lo, hi = max(0, shift), min(w, w + shift)
    torch.testing.assert_close(out[..., lo:hi], x[..., lo - shift : hi - shift], atol=1e-7, rtol=0)
    if shift == 0:
        torch.testing.assert_close(out, x)


def test_imagenet_p_translate_and_output_crop():
    x = torch.rand(1, 3, 256, 256)
    out = perturb(x, "translate", suite="imagenet-p", frames=[0, 40], output_size=224, quantize=False)
    assert out.shape == (1, 2, 3, 224, 224)
    # frame 0 is shifted by -20 px, frame 40 by +20 px; the 224 centre crop starts 16 px in, so only a 4 px band
    # at one side comes from the reflected border
    torch.testing.assert_close(out[0, 0, ..., :220], x[0, :, 16:240, 36:256])
    torch.testing.assert_close(out[0, 1, ..., 4:], x[0, :, 16:240, 0:220])


def test_brightness_equals_hsv_value_shift(images):
    out = perturb(images, "brightness", frames=[25], quantize=False)[0, 0]  # delta = (25 - 15) * 0.015
    hsv = rgb2hsv(images[0].permute(1, 2, 0).numpy().astype(np.float64) / 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.15, 0, 1)
    ref = torch.from_numpy(hsv2rgb(hsv)).permute(2, 0, 1).float()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_rotate_by_zero_degrees_is_identity_and_dtype_kept(images):
    x = images.double() / 255
    before = x._version
    out = perturb(x, "rotate", frames=[15], quantize=False)  # i - 15 = 0 degrees
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0], x, atol=1e-6, rtol=0)
    assert x._version == before


def test_grayscale_images(images):
    gray = images[:, :1]
    for name in ("snow", "spatter", "brightness", "motion_blur"):
        assert perturb(gray, name, frames=[0, 5]).shape == (2, 2, 1, 32, 32)


def test_bad_input(images):
    with pytest.raises(ValueError, match="unknown perturbation 'fog'; valid: gaussian_noise"):
        perturb(images, "fog")
    with pytest.raises(
        ValueError, match="unknown perturbation suite 'cifar10-c'; valid: imagenet-p, cifar10-p"
    ):
        perturb(images, "translate", suite="cifar10-c")
    with pytest.raises(ValueError, match="difficulty must be one of"):
        perturb(images, "gaussian_noise", difficulty=4)
    with pytest.raises(ValueError, match="out of range"):
        perturb(images, "translate", frames=[16])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        perturb(images[0], "translate")
    with pytest.raises(ValueError, match="ids has 1 entries for 2 images"):
        perturb(images, "translate", ids=[1])
    with pytest.raises(ValueError, match="unknown perturbation split"):
        list_perturbations(split="train")
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        next(iter_perturb(images, "translate", chunk=0))
    assert "translate" in PERTURBATIONS
