import functools
import json

import pytest
import torch
import torchvision
from torch import nn

from robustbench_lift.layers.lift import LiftDownPool2d, lifting_loss
from robustbench_lift.layers.pools import create_pool, list_pools
from robustbench_lift.models import (
    MODELS,
    build_model,
    build_model_from_cfg,
    is_pool,
    list_models,
    register_model,
)

# Narrow versions of each family keep the registry-wide tests cheap; the full widths are checked separately.
TINY = {
    "convnet": {"widths": [4, 8, 8]},
    "vgg": {"width_mult": 1 / 16},
    "resnet": {"width": 4},
    "mobilenet": {"width_mult": 0.1},
}


def tiny_kwargs(name: str) -> dict:
    return dict(TINY.get(MODELS.meta(name).get("family"), {}))


def pool_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if is_pool(m)]


def outside_pools(model: nn.Module) -> tuple[list, list]:
    """(name, type) of every module and (key, shape) of every state entry that is not inside a pool."""
    prefixes = tuple(n + "." for n in pool_names(model))
    pools = set(pool_names(model))
    modules = [
        (n, type(m).__name__)
        for n, m in model.named_modules()
        if n not in pools and not n.startswith(prefixes)
    ]
    state = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.startswith(prefixes)]
    return modules, state


def test_required_models_registered():
    required = {
        "convnet",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v2",
    }
    assert required <= set(list_models())
    assert list_models(family="resnet") == ["resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("pool", list_pools())
def test_every_model_with_every_pool(name, pool):
    model = build_model(name, pool=pool, num_classes=3, in_channels=3, **tiny_kwargs(name))
    x = torch.randn(2, 3, 32, 32)
    y = model(x)
    assert y.shape == (2, 3)
    assert torch.isfinite(y).all()
    pools = [m for m in model.modules() if is_pool(m)]
    assert pools, f"{name} has no pool layer"
    assert all(type(m) is type(create_pool(pool, 4)) for m in pools)
    # every downsampling goes through a pool: no strided conv, no other pooling module
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert m.stride == (1, 1), f"{name}.{mod_name} is strided"
    others = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and not any(n.startswith(p) for p in pool_names(model))
    ]
    assert others == []


@pytest.mark.parametrize("name", list_models())
def test_grayscale_and_odd_size(name):
    model = build_model(name, pool="lift", num_classes=3, in_channels=1, **tiny_kwargs(name)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 27)).shape == (1, 3)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("pool", [p for p in list_pools() if p != "max"])
def test_models_differ_only_in_pooling(name, pool):
    a = build_model(name, pool="max", num_classes=3, **tiny_kwargs(name))
    b = build_model(name, pool=pool, num_classes=3, **tiny_kwargs(name))
    assert pool_names(a) == pool_names(b)
    assert outside_pools(a) == outside_pools(b)
    cfg_a, cfg_b = dict(a.default_cfg), dict(b.default_cfg)
    assert cfg_a.pop("pool") == "max" and cfg_b.pop("pool") == pool
    assert cfg_a == cfg_b


@pytest.mark.parametrize("name", list_models())
def test_gradients_reach_lift_parameters(name):
    torch.manual_seed(0)
    model = build_model(name, pool="lift", num_classes=3, **tiny_kwargs(name)).train()
    lifts = [m for m in model.modules() if isinstance(m, LiftDownPool2d)]
    assert lifts
    y = model(torch.randn(2, 3, 32, 32))
    aux = lifting_loss(model)
    assert aux.item() > 0
    (nn.functional.cross_entropy(y, torch.tensor([0, 2])) + aux).backward()
    for layer in lifts:
        for pname, p in layer.named_parameters():
            assert p.grad is not None, pname
        # the 1x1 weights start at zero, so they are the ones that receive a gradient at initialisation
        assert layer.predict.pointwise.grad.abs().sum() > 0
        assert layer.update.pointwise.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("convnet", {}, 3),
        ("vgg11_bn", TINY["vgg"], 5),
        ("resnet18", {**TINY["resnet"], "stem": "cifar"}, 6),  # 3 blocks x (main path + shortcut)
        ("resnet18", {**TINY["resnet"], "stem": "imagenet"}, 8),  # + stem conv stride + stem max pool
        ("mobilenet_v2", {**TINY["mobilenet"], "stem": "cifar"}, 3),
        ("mobilenet_v2", {**TINY["mobilenet"], "stem": "imagenet"}, 5),
    ],
)
def test_pool_counts(name, kwargs, expected):
    assert len(pool_names(build_model(name, pool="avg", **kwargs))) == expected


@pytest.mark.parametrize(
    ("name", "tv_name"),
    [("resnet18", "resnet18"), ("resnet50", "resnet50"), ("mobilenet_v2", "mobilenet_v2")],
)
def test_imagenet_variants_match_torchvision_parameter_count(name, tv_name):
    # stride-1 convs + parameter-free pools: the same weights as the reference architecture
    ours = build_model(name, pool="max", num_classes=10, stem="imagenet")
    ref = getattr(torchvision.models, tv_name)(weights=None, num_classes=10)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet34"])
def test_full_size_forward(name):
    model = build_model(name, pool="blur", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_convnet_size():
    n = sum(p.numel() for p in build_model("convnet", in_channels=1).parameters())
    assert 250_000 < n < 1_000_000


def test_default_cfg_rebuilds_the_model():
    model = build_model(
        "resnet18",
        pool="lift",
        num_classes=5,
        in_channels=1,
        stem="imagenet",
        width=4,
        pool_kwargs={"kernel_size": 3},
    )
    cfg = model.default_cfg
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["arch"] == "resnet18" and cfg["pool"] == "lift" and cfg["stem"] == "imagenet"
    assert cfg["num_classes"] == 5 and cfg["in_channels"] == 1 and cfg["input_size"] == [224, 224]
    assert len(cfg["mean"]) == len(cfg["std"]) == 1
    rebuilt = build_model_from_cfg(cfg)
    assert rebuilt.default_cfg == cfg
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    assert rebuilt.load_state_dict(model.state_dict()) is not None
    lift = next(m for m in rebuilt.modules() if isinstance(m, LiftDownPool2d))
    assert lift.kernel_size == 3


def test_cfg_overrides_and_imagenet_stats():
    model = build_model("convnet", in_channels=1, input_size=(28, 28), mean=[0.3], std=[0.35])
    assert model.default_cfg["input_size"] == [28, 28]
    assert model.default_cfg["mean"] == [0.3] and model.default_cfg["std"] == [0.35]
    rn = build_model("resnet18", stem="imagenet", width=4)
    assert rn.default_cfg["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_lift_init_is_left_alone():
    model = build_model("convnet", pool="lift", widths=[4, 4, 4])
    for m in model.modules():
        if isinstance(m, LiftDownPool2d):
            assert m.predict.pointwise.abs().sum() == 0 and m.update.pointwise.abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"name": "resnet7"}, ValueError, "unknown model 'resnet7'; valid: convnet"),
        ({"name": "convnet", "pool": "median"}, ValueError, "unknown pooling 'median'; valid: max"),
        ({"name": "convnet", "pool": nn.MaxPool2d}, TypeError, "pool must be a pooling name"),
        ({"name": "convnet", "num_classes": 0}, ValueError, "num_classes must be a positive int, got 0"),
        ({"name": "convnet", "in_channels": 2.0}, ValueError, "in_channels must be a positive int"),
        ({"name": "convnet", "depth": 3}, TypeError, r"unknown option\(s\) \['depth'\]; valid: "),
        ({"name": "resnet18", "stem": "tiny"}, ValueError, "unknown stem 'tiny'; valid: cifar, imagenet"),
        ({"name": "convnet", "mean": [0.5, 0.5]}, ValueError, "one value per input channel"),
        ({"name": "convnet", "std": [1, 1, 0]}, ValueError, "std must be positive"),
        ({"name": "convnet", "input_size": (32,)}, ValueError, "input_size must be"),
        ({"name": "convnet", "pool": "lift", "pool_kwargs": {"kernel_size": 4}}, ValueError, "kernel_size"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        build_model(**kwargs)


def test_register_model_and_duplicates():
    name = "test_only_tiny_convnet"

    @register_model(name, family="test")
    def tiny(pool_layer, *, num_classes, in_channels, hidden=4):
        return nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            pool_layer(hidden),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(hidden, num_classes),
        )

    try:
        model = build_model(name, pool="blur", num_classes=2, in_channels=1, hidden=3)
        assert model.default_cfg["hidden"] == 3
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 2)
        with pytest.raises(ValueError, match="already registered"):
            register_model(name)(tiny)
        with pytest.raises(ValueError, match="already registered"):
            MODELS.add("resnet18", functools.partial(tiny))
    finally:
        MODELS._items.pop(name, None)
        MODELS._meta.pop(name, None)
