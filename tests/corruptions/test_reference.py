"""The reference backend: imagecorruptions 1.1.2 mended for today's stack, seeded per image, side-effect free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from corruptions.reference import (
    REFERENCE_CORRUPTIONS,
    corrupt_reference,
    corrupt_reference_numpy,
    frost_texture_paths,
    reference_package_dir,
)
from corruptions.rng import derive_seed

ROOT = Path(__file__).resolve().parents[2]
STOCHASTIC = {
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
}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # smooth-ish content plus texture, so blurs and noises all change something
    base = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(2, 3, 36, 40)
    return (0.6 * base + 0.4 * torch.rand(2, 3, 36, 40, generator=g)).contiguous()


@pytest.mark.parametrize("name", REFERENCE_CORRUPTIONS)
def test_every_corruption_runs_and_is_reproducible(images, name):
    for severity in (1, 5):
        out = corrupt_reference(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        assert torch.equal(out, (out * 255).round() / 255), "output is not on 8-bit levels"
        assert not torch.equal(out, (images * 255).round() / 255), f"{name} s{severity} changed nothing"
        again = corrupt_reference(images, name, severity, seed=3)
        assert torch.equal(out, again)


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_seed_and_ids_drive_the_randomness(images, name):
    same = images[:1].expand(2, -1, -1, -1).contiguous()
    out = corrupt_reference(same, name, 3, seed=0, ids=[7, 8])
    assert not torch.equal(out[0], out[1]), "different ids must give different draws"
    # image i depends only on (seed, ids[i]): batch == one by one, any order
    single = corrupt_reference(same[1:], name, 3, seed=0, ids=[8])
    torch.testing.assert_close(out[1:], single, atol=0, rtol=0)
    other_seed = corrupt_reference(same, name, 3, seed=1, ids=[7, 8])
    assert not torch.equal(out, other_seed)


def test_draws_are_the_published_numpy_stream():
    # gaussian_noise severity 1 is x/255 + N(0, .08): with np.random seeded as we seed it, the result is known.
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(32, 33, 3), dtype=np.uint8)
    seed = derive_seed(0, 0, "gaussian_noise", 1)
    got = corrupt_reference_numpy(img, "gaussian_noise", 1, seed=seed)
    rs = np.random.RandomState(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))
    expected = np.uint8(np.clip(img / 255.0 + rs.normal(size=img.shape, scale=0.08), 0, 1) * 255)
    np.testing.assert_array_equal(got, expected)


def test_deterministic_corruption_matches_closed_form():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    u8 = (x * 255).round()
    out = corrupt_reference(x, "contrast", 2) * 255
    means = (u8 / 255).mean(dim=(2, 3), keepdim=True)
    expected = torch.floor(((u8 / 255 - means) * 0.3 + means).clamp(0, 1) * 255)
    assert (out - expected).abs().max() <= 1.0


def test_uint8_and_grayscale_inputs():
    g = torch.Generator().manual_seed(2)
    u8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    out = corrupt_reference(u8, "brightness", 3)
    assert out.dtype == torch.uint8 and out.shape == u8.shape
    assert out.float().mean() > u8.float().mean()
    gray = torch.rand(2, 1, 32, 34, generator=g, dtype=torch.float64)
    out = corrupt_reference(gray, "pixelate", 4)
    assert out.shape == gray.shape and out.dtype == torch.float64
    # pixelate on a replicated gray image leaves all three channels equal: the mean gives that channel back
    rgb = corrupt_reference(gray.expand(-1, 3, -1, -1).contiguous(), "pixelate", 4)
    torch.testing.assert_close(out, rgb[:, :1])


def test_bad_input_raises_clear_errors(images):
    with pytest.raises(ValueError, match="imagenet-c"):
        corrupt_reference(images, "fog", 1, suite="cifar10-c")
    with pytest.raises(ValueError, match="valid: gaussian_noise, shot_noise"):
        corrupt_reference(images, "rain", 1)
    with pytest.raises(ValueError, match="1..5"):
        corrupt_reference(images, "fog", 6)
    with pytest.raises(ValueError, match="at least 32"):
        corrupt_reference(torch.rand(1, 3, 16, 64), "fog", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt_reference(images * 2, "fog", 1)
    with pytest.raises(ValueError, match="channels"):
        corrupt_reference(torch.rand(1, 2, 32, 32), "fog", 1)
    with pytest.raises(ValueError, match="one entry per image"):
        corrupt_reference(images, "fog", 1, ids=[1])


def test_global_state_untouched(images):
    import skimage.filters

    corrupt_reference(images[:1], "fog", 1)  # warm: third-party libraries import their submodules once
    keys = set(sys.modules)
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state is what must stay untouched
    torch_state = torch.get_rng_state()
    gaussian = skimage.filters.gaussian
    for name in REFERENCE_CORRUPTIONS:
        corrupt_reference(images[:1], name, 2, seed=9)
    assert set(sys.modules) == keys
    assert not [k for k in sys.modules if "imagecorruptions" in k or k == "pkg_resources"]
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert not hasattr(np, "float_")
    assert skimage.filters.gaussian is gaussian
    with pytest.raises(TypeError):
        gaussian(np.zeros((4, 4, 3)), sigma=1, multichannel=True)


def test_fresh_process_import_leaves_no_trace():
    code = (
        "import sys, numpy as np\n"
        "from corruptions.reference import corrupt_reference\n"
        "import torch\n"
        "corrupt_reference(torch.rand(1, 3, 32, 32), 'frost', 1)\n"
        "assert not [k for k in sys.modules if 'imagecorruptions' in k or k == 'pkg_resources'], 'module leaked'\n"
        "assert not hasattr(np, 'float_')\n"
        "import warnings\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "try:\n"
        "    import imagecorruptions\n"
        "except ModuleNotFoundError as e:\n"
        "    assert e.name == 'pkg_resources', e\n"
        "    print('broken-as-before')\n"
        "else:\n"
        "    print('imports')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    # whatever `import imagecorruptions` did before (it fails here without setuptools' pkg_resources), it still does
    assert res.stdout.strip() in {"broken-as-before", "imports"}


def test_frost_textures_come_from_the_installed_package():
    paths = frost_texture_paths()
    pkg = os.path.realpath(reference_package_dir())
    assert len(paths) == 6
    for p in paths:
        assert os.path.isfile(p) and os.path.realpath(p).startswith(pkg + os.sep)
    copied = [p for ext in ("png", "jpg") for p in ROOT.glob(f"**/frost*.{ext}") if ".venv" not in p.parts]
    assert not copied, f"frost textures must not be copied into the project: {copied}"
