import copy
import logging

import pytest
import torch
import torchvision
from torch import nn

from robustbench_lift import swap_pooling
from robustbench_lift.layers.blur import BlurPool2d
from robustbench_lift.layers.lift import LiftDownPool2d
from robustbench_lift.layers.pools import list_pools
from robustbench_lift.models import build_model, is_pool
from robustbench_lift.models.swap import PooledConv2d


def _tv(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=3).eval()


def _tv_vgg11_bn() -> nn.Module:
    """torchvision's vgg11_bn with its 100 M-parameter MLP head swapped for one linear layer (fast to build).

    Pooling lives in ``features``; the head only has to accept the 512x7x7 output of ``avgpool``.
    """
    with torch.device("meta"):
        model = torchvision.models.vgg11_bn(weights=None, num_classes=3)
        model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 3))
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return model.eval()


@torch.no_grad()
def _shape(model: nn.Module, x: torch.Tensor) -> torch.Size:
    return model(x).shape


def _strided(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]


@pytest.mark.parametrize("kind", list_pools())
def test_resnet18_pools(kind):
    model = _tv("resnet18")
    x = torch.randn(1, 3, 64, 64)
    before = _shape(model, x)
    out = swap_pooling(model, kind)
    assert out is model
    assert model.pooling_swap.pools == ["maxpool"] and model.pooling_swap.strided_convs == []
    assert is_pool(model.maxpool) and not isinstance(model.maxpool, nn.MaxPool2d) or kind == "max"
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert _shape(model, x) == before
    assert len(_strided(model)) == 7  # untouched without strided_convs


def test_resnet18_strided_convs():
    model = _tv("resnet18")
    keys = {k: v.shape for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    before = _shape(model, x)
    swap_pooling(model, "blur", strided_convs=True, filt_size=5)
    report = model.pooling_swap
    assert report.count == 8 and len(report.strided_convs) == 7
    assert "conv1" in report.strided_convs and "layer2.0.downsample.0" in report.strided_convs
    assert _strided(model) == []
    assert _shape(model, x) == before
    # shortcut 1x1 convs pool their input; the others pool their output (BN and ReLU are applied in forward)
    assert model.layer2[0].downsample[0].pool_first and model.layer2[0].downsample[0].pool.channels == 64
    assert isinstance(model.layer2[0].conv1, PooledConv2d) and not model.layer2[0].conv1.pool_first
    assert model.layer2[0].conv1.pool.channels == 128 and model.layer2[0].conv1.pool.filt_size == 5
    # fixed-filter pools add no state: a state dict saved before the swap loads strictly
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    model.load_state_dict(_tv("resnet18").state_dict())


def test_strided_conv_with_stride_pool_is_the_same_function():
    ref = _tv("mobilenet_v2")
    model = copy.deepcopy(ref)
    swap_pooling(model, "stride", strided_convs=True)
    assert len(model.pooling_swap.strided_convs) == 5 and model.pooling_swap.pools == []
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-4)


def test_mobilenet_v2_pool_after_activation():
    model = _tv("mobilenet_v2")
    x = torch.randn(1, 3, 32, 32)
    before = _shape(model, x)
    swap_pooling(model, "lift", strided_convs=True)
    assert _shape(model, x) == before
    assert _strided(model) == []
    stem = model.features[0]
    assert stem[0].stride == (1, 1)
    assert isinstance(stem[2], nn.Sequential) and isinstance(stem[2][0], nn.ReLU6)
    assert isinstance(stem[2][1], LiftDownPool2d) and stem[2][1].channels == 32
    lifts = [m for m in model.modules() if isinstance(m, LiftDownPool2d)]
    assert len(lifts) == 5


def test_vgg11_bn_channels_from_dry_run():
    model = _tv_vgg11_bn()
    x = torch.randn(1, 3, 32, 32)
    before = _shape(model, x)
    swap_pooling(model, "lift")
    assert len(model.pooling_swap.pools) == 5
    lifts = [m for m in model.features if isinstance(m, LiftDownPool2d)]
    assert [m.channels for m in lifts] == [64, 128, 256, 512, 512]
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert _shape(model, x) == before


def test_dry_run_leaves_modes_and_statistics_alone():
    model = _tv_vgg11_bn().train()
    model.features[1].eval()
    stats = copy.deepcopy(model.features[1].running_mean)
    swap_pooling(model, "avg")
    assert model.training and not model.features[1].training
    assert model.features[2].training
    torch.testing.assert_close(model.features[1].running_mean, stats)


def test_other_strides_left_alone(caplog):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.MaxPool2d(2),
        nn.AvgPool2d(3, stride=(2, 1), padding=1),
        nn.AdaptiveAvgPool2d(1),
    )
    with caplog.at_level(logging.INFO, logger="robustbench_lift.models.swap"):
        swap_pooling(model, "blur")
    assert model.pooling_swap.pools == ["2"] and model.pooling_swap.skipped == ["1", "3"]
    assert isinstance(model[2], BlurPool2d) and isinstance(model[1], nn.MaxPool2d)
    assert "replaced 1 pooling layers and 0 strided convs with 'blur'" in caplog.text


def test_toolkit_model_swap_equals_build():
    built = build_model("convnet", pool="lift", widths=[4, 8, 8], num_classes=3)
    swapped = swap_pooling(build_model("convnet", pool="max", widths=[4, 8, 8], num_classes=3), "lift")
    assert len(swapped.pooling_swap.pools) == 3
    assert [(n, type(m)) for n, m in swapped.named_modules()] == [
        (n, type(m)) for n, m in built.named_modules()
    ]
    assert [(k, v.shape) for k, v in swapped.state_dict().items()] == [
        (k, v.shape) for k, v in built.state_dict().items()
    ]


def test_explicit_example_input_for_grayscale():
    model = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    swap_pooling(model, "lift", example_input=torch.zeros(1, 1, 6, 6))
    assert model[2].channels == 5
    assert model(torch.randn(2, 1, 6, 6)).shape == (2, 45)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown pooling 'median'; valid: max"):
        swap_pooling(nn.Sequential(), "median")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        swap_pooling("resnet18", "max")
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        swap_pooling(nn.Sequential(nn.MaxPool2d(2)), "avg", example_input=[1, 2])
    with pytest.raises(ValueError, match="pass example_input"):
        swap_pooling(nn.Sequential(nn.MaxPool2d(2)), "lift")
