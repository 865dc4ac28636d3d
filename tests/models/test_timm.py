"""timm:NAME models: the project's pools through timm's aa_layer hook or a module swap, checkpoints, errors."""

import argparse
import sys

import pytest
import torch
from torch import nn

from robustbench_lift.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robustbench_lift.layers.blur import BlurPool2d
from robustbench_lift.layers.lift import LiftDownPool2d
from robustbench_lift.models import build_model, is_pool

pytest.importorskip("timm")


def _pools(model):
    return [m for m in model.modules() if is_pool(m)]


def test_aa_layer_hook_puts_the_project_pool_in(generator):
    model = build_model("timm:resnet10t", pool="lift", num_classes=3, in_channels=1).eval()
    pools = _pools(model)
    assert pools and all(isinstance(p, LiftDownPool2d) for p in pools)
    assert not hasattr(model, "pooling_swap")  # the hook did it, not the module swap
    cfg = model.default_cfg
    assert (cfg["arch"], cfg["pool"], cfg["num_classes"], cfg["in_channels"]) == (
        "timm:resnet10t",
        "lift",
        3,
        1,
    )
    assert cfg["mean"] == [0.5] and len(cfg["input_size"]) == 2
    x = torch.randn(2, 1, 32, 32, generator=generator)
    assert model(x).shape == (2, 3)


def test_models_without_the_hook_get_a_module_swap(generator):
    model = build_model("timm:dla46_c", pool="blur", num_classes=4).eval()
    assert model.pooling_swap.count > 0
    assert _pools(model) and all(isinstance(p, BlurPool2d) for p in _pools(model))
    left = [m for m in model.modules() if isinstance(m, nn.MaxPool2d) and m.stride in (2, (2, 2))]
    assert not left
    assert model(torch.randn(1, 3, 32, 32, generator=generator)).shape == (1, 4)


def test_pool_none_keeps_timms_own_pooling():
    model = build_model("timm:resnet10t", pool=None, num_classes=2)
    assert not _pools(model) and model.default_cfg["pool"] is None
    assert any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_unknown_name_suggests_close_ones_and_missing_timm_names_the_extra(monkeypatch):
    with pytest.raises(ValueError, match=r"timm:resnet18x is not a timm model; did you mean timm:resnet18"):
        build_model("timm:resnet18x")
    with pytest.raises(ValueError, match="unknown pooling 'nope'"):
        build_model("timm:resnet10t", pool="nope")
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    from robustbench_lift.models.timm_models import TimmNotInstalledError

    with pytest.raises(TimmNotInstalledError, match=r"robustbench-lift\[timm\]"):
        build_model("timm:resnet10t")


def test_native_round_trip(tmp_path, generator):
    torch.manual_seed(0)
    model = build_model("timm:resnet10t", pool="blur", num_classes=3, in_channels=1).eval()
    path = save_checkpoint(tmp_path / "r10.safetensors", model)
    ckpt = load_checkpoint(path)
    assert (ckpt.meta.arch, ckpt.meta.pool, ckpt.meta.in_channels) == ("timm:resnet10t", "blur", 1)
    x = torch.randn(2, 1, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)


def test_state_dict_with_pool_swapped_on_load(tmp_path, generator):
    torch.manual_seed(0)
    plain = build_model("timm:resnet10t", pool=None, num_classes=5, in_channels=1).eval()
    torch.save(plain.state_dict(), tmp_path / "r10.pth")
    ckpt = load_checkpoint(tmp_path / "r10.pth", arch="timm:resnet10t")  # sizes read from the weights
    assert (ckpt.meta.num_classes, ckpt.meta.in_channels) == (5, 1)
    x = torch.randn(2, 1, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), plain(x), atol=0, rtol=0)
    swapped = load_checkpoint(tmp_path / "r10.pth", arch="timm:resnet10t", pool="max")
    assert swapped.meta.pool == "max" and _pools(swapped.model)
    with pytest.raises(CheckpointError, match="did you mean timm:resnet10t"):
        load_checkpoint(tmp_path / "r10.pth", arch="timm:resnet10x")


def test_timm_training_checkpoint_names_its_arch(tmp_path, generator):
    torch.manual_seed(0)
    model = build_model("timm:mobilenetv3_small_050", pool=None, num_classes=4, in_channels=1).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.save(
        {
            "epoch": 2,
            "arch": "mobilenetv3_small_050",
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "version": 2,
            "args": argparse.Namespace(model="mobilenetv3_small_050", lr=1e-3, num_classes=4),
        },
        tmp_path / "last.pth.tar",
    )
    ckpt = load_checkpoint(tmp_path / "last.pth.tar")
    assert (ckpt.meta.arch, ckpt.meta.num_classes, ckpt.meta.in_channels) == (
        "timm:mobilenetv3_small_050",
        4,
        1,
    )
    x = torch.randn(2, 1, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)


def test_recorded_normalisation():
    rgb = build_model("timm:resnet10t", pool=None, num_classes=2)
    assert rgb.default_cfg["mean"] == pytest.approx([0.485, 0.456, 0.406])  # timm's pretrained config
    given = build_model("timm:resnet10t", pool=None, num_classes=2, mean=[0.1, 0.2, 0.3], input_size=(64, 64))
    assert given.default_cfg["mean"] == pytest.approx([0.1, 0.2, 0.3]) and given.default_cfg[
        "input_size"
    ] == [64, 64]
    with pytest.raises(ValueError, match="one value per input channel"):
        build_model("timm:resnet10t", pool=None, in_channels=1, std=[0.2, 0.2, 0.2])
