import json
import pickle
import sys
import types
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from robustbench_lift.checkpoint import (
    METADATA_KEY,
    CheckpointError,
    content_hash,
    load_checkpoint,
    save_checkpoint,
)
from robustbench_lift.layers.lift import LiftDownPool2d
from robustbench_lift.layers.pools import create_pool


class TinyNet(nn.Module):
    def __init__(self, pool: str = "max", num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = create_pool(pool, 4)
        self.fc = nn.Linear(4, num_classes)
        self.default_cfg = {
            "arch": "tiny",
            "pool": pool,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": (in_channels, 8, 8),
            "mean": (0.5,) * in_channels,
            "std": (0.25,) * in_channels,
        }

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


def _build_tiny(name, pool="max", num_classes=10, in_channels=3, **options):
    if name != "tiny":
        raise ValueError(f"unknown model {name!r}; valid: tiny")
    model = TinyNet(pool, num_classes, in_channels)
    model.build_options = options
    return model


@pytest.fixture
def fake_models(monkeypatch):
    """Stand-in for robustbench_lift.models so these tests do not depend on the model zoo."""
    module = types.ModuleType("robustbench_lift.models")
    module.build_model = _build_tiny
    monkeypatch.setitem(sys.modules, "robustbench_lift.models", module)
    return module


def _trained(pool="lift", num_classes=10, seed=0):
    torch.manual_seed(seed)
    model = TinyNet(pool, num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.bn.running_mean.uniform_(-1, 1)
    return model.eval()


def test_native_round_trip(tmp_path, fake_models, generator):
    model = _trained("lift")
    path = save_checkpoint(
        tmp_path / "sub" / "m.safetensors",
        model,
        class_names=[f"c{i}" for i in range(10)],
        dataset="fashion-mnist",
        train_config={"epochs": 2, "root": tmp_path},
    )
    ckpt = load_checkpoint(path)
    assert ckpt.meta.format == "native" and ckpt.path == path and not ckpt.model.training
    assert (ckpt.meta.arch, ckpt.meta.pool, ckpt.meta.num_classes, ckpt.meta.in_channels) == (
        "tiny",
        "lift",
        10,
        3,
    )
    assert (
        ckpt.meta.input_size == (3, 8, 8)
        and ckpt.meta.mean == (0.5,) * 3
        and ckpt.meta.class_names[3] == "c3"
    )
    assert ckpt.meta.train_config == {"epochs": 2, "root": str(tmp_path)}
    assert ckpt.meta.content_hash == content_hash(model.state_dict())
    assert isinstance(ckpt.model.pool, LiftDownPool2d)
    # The rest of default_cfg goes back to the builder.
    assert ckpt.model.build_options == {"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.25] * 3}
    x = torch.randn(2, 3, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["m.safetensors"]  # no temp file left
    with safe_open(str(path), "pt") as fh:
        header = json.loads(fh.metadata()[METADATA_KEY])
    assert (
        header["format"] == "native"
        and header["package_version"]
        and header["content_hash"].startswith("sha256:")
    )


def test_content_hash_sensitivity():
    a = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    assert content_hash(a) == content_hash({"b": torch.zeros(3), "w": torch.ones(2, 3)})
    assert content_hash(a) != content_hash({"w": torch.ones(3, 2), "b": torch.zeros(3)})
    assert content_hash(a) != content_hash({"w": torch.ones(2, 3, dtype=torch.float64), "b": torch.zeros(3)})
    assert content_hash(a) != content_hash({"v": torch.ones(2, 3), "b": torch.zeros(3)})
    changed = {"w": torch.ones(2, 3), "b": torch.tensor([0.0, 0.0, 1e-30])}
    assert content_hash(a) != content_hash(changed)


def test_tampered_file_is_rejected(tmp_path, fake_models):
    path = save_checkpoint(tmp_path / "m.safetensors", _trained("max"))
    with safe_open(str(path), "pt") as fh:
        header = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    tensors["fc.bias"] = tensors["fc.bias"] + 1
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load_checkpoint(path)


def test_missing_garbage_and_truncated_files(tmp_path, fake_models):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"hello, this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(garbage, arch="tiny")
    good = save_checkpoint(tmp_path / "m.safetensors", _trained("max"))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    torch.save(_trained("max").state_dict(), tmp_path / "sd.pt")
    data = (tmp_path / "sd.pt").read_bytes()
    (tmp_path / "sd_trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "sd_trunc.pt", arch="tiny")
    assert issubclass(CheckpointError, ValueError)


class _Evil:
    """Unpickling this runs code that creates a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').close()",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_not_executed(tmp_path, fake_models, writer):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": _Evil(target)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match=r"full pickle.*NOT loaded.*trust_pickle=True"):
        load_checkpoint(path, arch="tiny", pool="max")
    assert not target.exists()
    if writer == "torch.save":
        # The same file does run code once trusted: the test above really guards something.
        with pytest.raises(CheckpointError):
            load_checkpoint(path, arch="tiny", pool="max", trust_pickle=True)
        assert target.exists()


def test_trusted_full_model_pickle(tmp_path, generator):
    model = _trained("blur")
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="trust_pickle"):
        load_checkpoint(tmp_path / "full.pt")
    ckpt = load_checkpoint(tmp_path / "full.pt", trust_pickle=True)
    assert ckpt.meta.format == "pickle"
    x = torch.randn(1, 3, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "lightning"])
def test_state_dict_wrappers(tmp_path, fake_models, generator, wrap):
    model = _trained("max", num_classes=7)
    sd = model.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 5},
    }[wrap]
    torch.save(obj, tmp_path / "w.pth")
    ckpt = load_checkpoint(tmp_path / "w.pth", arch="tiny", pool="max")
    assert ckpt.meta.format == "state_dict" and ckpt.meta.num_classes == 7  # read from the head
    assert ckpt.meta.mean == (0.5,) * 3  # from the rebuilt model's default_cfg
    assert ckpt.meta.model_cfg["arch"] == "tiny" and ckpt.meta.model_cfg["num_classes"] == 7
    x = torch.randn(2, 3, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)


def test_plain_state_dict_needs_arch(tmp_path, fake_models):
    torch.save(_trained("max").state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="pass arch="):
        load_checkpoint(tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="unknown model 'resnet999'; valid: tiny"):
        load_checkpoint(tmp_path / "sd.pt", arch="resnet999")


def test_key_and_shape_errors_name_the_keys(tmp_path, fake_models):
    sd = _trained("lift").state_dict()
    torch.save(sd, tmp_path / "lift.pt")
    # Built with max pooling, the lift weights are unexpected.
    with pytest.raises(CheckpointError, match=r"unexpected keys 4 \('pool.predict.depthwise'"):
        load_checkpoint(tmp_path / "lift.pt", arch="tiny", pool="max")
    with pytest.raises(CheckpointError, match=r"missing keys 4 \('pool.predict.depthwise'"):
        torch.save(_trained("max").state_dict(), tmp_path / "max.pt")
        load_checkpoint(tmp_path / "max.pt", arch="tiny", pool="lift")
    bad = dict(sd)
    bad["conv.weight"] = torch.zeros(4, 3, 5, 5)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(
        CheckpointError, match=r"'conv.weight': checkpoint \(4, 3, 5, 5\) vs model \(4, 3, 3, 3\)"
    ):
        load_checkpoint(tmp_path / "bad.pt", arch="tiny", pool="lift")
    many = {f"extra.{i}": torch.zeros(1) for i in range(9)} | sd
    torch.save(many, tmp_path / "many.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys 9 \(.* and 4 more\)"):
        load_checkpoint(tmp_path / "many.pt", arch="tiny", pool="lift")


def test_num_classes_inconsistent_with_head(tmp_path, fake_models):
    torch.save(_trained("max", num_classes=10).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(
        CheckpointError, match=r"num_classes=100 but the checkpoint's head 'fc.weight' has 10 outputs"
    ):
        load_checkpoint(tmp_path / "sd.pt", arch="tiny", pool="max", num_classes=100)
    native = save_checkpoint(tmp_path / "m.safetensors", _trained("max", num_classes=10))
    with pytest.raises(CheckpointError, match=r"num_classes=100 given, but .* saved with num_classes=10"):
        load_checkpoint(native, num_classes=100)
    with pytest.raises(CheckpointError, match=r"arch='vgg11' given"):
        load_checkpoint(native, arch="vgg11")
    with pytest.raises(ValueError, match=r"num_classes=5 but the head 'fc.weight' has 10 outputs"):
        save_checkpoint(tmp_path / "x.safetensors", _trained("max"), num_classes=5)


def test_pool_override_on_native_load(tmp_path, fake_models, generator):
    model = _trained("max")
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    ckpt = load_checkpoint(path, pool="avg")
    assert ckpt.meta.pool == "avg" and isinstance(ckpt.model.pool, nn.AvgPool2d)


def test_save_errors(tmp_path):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="pass arch="):
        save_checkpoint(tmp_path / "p.safetensors", plain)
    with pytest.raises(TypeError, match=r"unknown save_checkpoint arguments \['colour'\]"):
        save_checkpoint(tmp_path / "p.safetensors", plain, arch="x", colour="red")
    with pytest.raises(ValueError, match="3 class_names given for num_classes=2"):
        save_checkpoint(tmp_path / "p.safetensors", plain, arch="x", class_names=["a", "b", "c"])
    assert not list(tmp_path.iterdir())


def test_tied_weights_are_saved(tmp_path, fake_models):
    model = _trained("max")
    model.extra = nn.Linear(4, 10)
    model.extra.weight = model.fc.weight
    path = save_checkpoint(tmp_path / "tied.safetensors", model)
    with safe_open(str(path), "pt") as fh:
        assert torch.equal(fh.get_tensor("extra.weight"), fh.get_tensor("fc.weight"))


def test_plain_safetensors_file(tmp_path, fake_models, generator):
    model = _trained("blur")
    save_file(model.state_dict(), str(tmp_path / "plain.safetensors"))
    ckpt = load_checkpoint(tmp_path / "plain.safetensors", arch="tiny", pool="blur")
    assert ckpt.meta.format == "state_dict"
    x = torch.randn(1, 3, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x))


def test_torchscript_archive(tmp_path, generator):
    model = _trained("avg")
    with (
        warnings.catch_warnings()
    ):  # TorchScript is deprecated upstream, but archives still exist in the wild
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), tmp_path / "m.ts")
    ckpt = load_checkpoint(tmp_path / "m.ts", num_classes=10)
    assert ckpt.meta.format == "torchscript" and ckpt.meta.content_hash.startswith("sha256:")
    x = torch.randn(2, 3, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x))


@pytest.mark.parametrize(
    ("arch", "options", "size"),
    [
        ("convnet", {"in_channels": 1, "pool_kwargs": {"kernel_size": 3}}, 28),
        ("resnet18", {"stem": "imagenet"}, 32),
    ],
)
def test_round_trip_through_build_model(tmp_path, generator, arch, options, size):
    from robustbench_lift.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, pool="lift", num_classes=5, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    path = save_checkpoint(tmp_path / f"{arch}.safetensors", model, dataset="fashion-mnist")
    ckpt = load_checkpoint(path)
    assert ckpt.meta.arch == arch and ckpt.meta.pool == "lift" and ckpt.meta.num_classes == 5
    assert ckpt.model.default_cfg == model.default_cfg
    x = torch.randn(2, model.default_cfg["in_channels"], size, size, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)
    if arch == "convnet":
        # Another pooling kind cannot take the lift weights: named, not silently dropped.
        with pytest.raises(CheckpointError, match="unexpected keys"):
            load_checkpoint(path, pool="max")


def test_round_trip_torchvision_with_swapped_pooling(tmp_path, generator):
    swap = pytest.importorskip("robustbench_lift.models.swap")
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=4)
    swap.swap_pooling(model, "blur", strided_convs=True, example_input=torch.zeros(1, 3, 32, 32))
    model.eval()
    path = save_checkpoint(tmp_path / "tv.safetensors", model, arch="torchvision:resnet18")
    ckpt = load_checkpoint(path)
    assert (ckpt.meta.arch, ckpt.meta.pool, ckpt.meta.num_classes) == ("torchvision:resnet18", "blur", 4)
    assert ckpt.meta.model_cfg["swap"] == {"strided_convs": True}
    x = torch.randn(1, 3, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)


def test_in_channels_and_num_classes_are_read_from_the_weights(tmp_path, fake_models, generator):
    torch.manual_seed(1)
    model = TinyNet("max", num_classes=7, in_channels=1).eval()
    torch.save(model.state_dict(), tmp_path / "gray.pt")
    ckpt = load_checkpoint(tmp_path / "gray.pt", arch="tiny", pool="max")
    assert (ckpt.meta.in_channels, ckpt.meta.num_classes) == (1, 7)
    x = torch.randn(2, 1, 8, 8, generator=generator)
    torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)
    # an explicit value that does not fit is still the named-key error, not silently replaced
    with pytest.raises(
        CheckpointError, match=r"'conv.weight': checkpoint \(4, 1, 3, 3\) vs model \(4, 3, 3, 3\)"
    ):
        load_checkpoint(tmp_path / "gray.pt", arch="tiny", pool="max", in_channels=3)


def test_in_channels_read_for_toolkit_and_torchvision_archs(tmp_path, generator):
    import torchvision

    from robustbench_lift.models import build_model

    torch.manual_seed(0)
    convnet = build_model("convnet", pool="max", num_classes=10, in_channels=1).eval()
    torch.save(convnet.state_dict(), tmp_path / "convnet.pt")
    ckpt = load_checkpoint(tmp_path / "convnet.pt", arch="convnet", pool="max")
    assert (ckpt.meta.in_channels, ckpt.meta.num_classes) == (1, 10)
    x = torch.randn(2, 1, 28, 28, generator=generator)
    torch.testing.assert_close(ckpt.model(x), convnet(x), atol=0, rtol=0)

    tv = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=5)
    old = tv.features[0][0]
    tv.features[0][0] = nn.Conv2d(1, old.out_channels, 3, stride=2, padding=1, bias=False)
    tv.eval()
    torch.save({"model": tv.state_dict()}, tmp_path / "tv.pth")
    ckpt = load_checkpoint(tmp_path / "tv.pth", arch="torchvision:mobilenet_v3_small")
    assert (ckpt.meta.in_channels, ckpt.meta.num_classes) == (1, 5)
    x = torch.randn(2, 1, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), tv(x), atol=0, rtol=0)
    # given explicitly, torchvision builds with that many input channels too
    explicit = load_checkpoint(tmp_path / "tv.pth", arch="torchvision:mobilenet_v3_small", in_channels=1)
    torch.testing.assert_close(explicit.model(x), tv(x), atol=0, rtol=0)


def test_defaults_apply_to_external_files_only(tmp_path, fake_models):
    native = save_checkpoint(tmp_path / "m.safetensors", _trained("max", num_classes=10))
    torch.save(_trained("max", num_classes=6).state_dict(), tmp_path / "sd.pt")
    defaults = {"arch": "tiny", "pool": "max", "num_classes": 6}
    # a native file keeps what it records (the defaults would conflict with it)
    assert load_checkpoint(native, defaults=defaults).meta.num_classes == 10
    ckpt = load_checkpoint(tmp_path / "sd.pt", defaults=defaults)
    assert (ckpt.meta.arch, ckpt.meta.num_classes) == ("tiny", 6)
    # explicit arguments still beat the defaults, and a native file still checks them
    with pytest.raises(CheckpointError, match=r"num_classes=6 given, but .* saved with num_classes=10"):
        load_checkpoint(native, num_classes=6)
    with pytest.raises(TypeError, match="unknown defaults"):
        load_checkpoint(native, defaults={"colour": "red"})


def _namespace(**kw):
    import argparse

    return argparse.Namespace(**kw)


def test_training_script_checkpoints_load_without_trust_pickle(tmp_path, fake_models, generator):
    model = _trained("max", num_classes=7)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8, generator=generator)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 3)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    timm_style = {
        "epoch": 4,
        "arch": "tiny",
        "state_dict": model.state_dict(),
        "state_dict_ema": ema,
        "optimizer": opt.state_dict(),
        "version": 2,
        "args": _namespace(model="tiny", lr=0.1, sched="cosine", input_size=None, mean=[0.5, 0.5, 0.5]),
        "metric": 0.5,
    }
    tv_style = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": 4,
        "args": _namespace(model="resnet18", lr=0.1, epochs=90, weights=None),
    }
    x = torch.randn(2, 3, 8, 8, generator=generator)
    for name, obj in (("timm", timm_style), ("tv", tv_style)):
        torch.save(obj, tmp_path / f"{name}.pth")
        ckpt = load_checkpoint(tmp_path / f"{name}.pth", arch="tiny", pool="max")
        assert ckpt.meta.format == "state_dict" and ckpt.meta.num_classes == 7
        # the training weights, not the EMA copy
        torch.testing.assert_close(ckpt.model(x), model(x), atol=0, rtol=0)
    # the Namespace allowance is for that load only, not left in torch's global list
    assert not any(g is __import__("argparse").Namespace for g in torch.serialization.get_safe_globals())


class _Plain:
    """Any class other than the allowed Namespace: the file is a full pickle."""


@pytest.mark.parametrize("payload", ["evil_in_namespace", "other_class"])
def test_namespace_allowance_refuses_everything_else(tmp_path, fake_models, payload):
    target = tmp_path / "pwned"
    value = _Evil(target) if payload == "evil_in_namespace" else _Plain()
    obj = {"state_dict": _trained("max").state_dict(), "arch": "tiny", "args": _namespace(model=value)}
    torch.save(obj, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"full pickle.*NOT loaded"):
        load_checkpoint(tmp_path / "x.pth", arch="tiny", pool="max")
    assert not target.exists()


def test_training_script_checkpoints_name_their_architecture(tmp_path, generator):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=3).eval()
    obj = {"model": tv.state_dict(), "epoch": 1, "args": _namespace(model="mobilenet_v3_small", lr=0.5)}
    torch.save(obj, tmp_path / "tv.pth")
    ckpt = load_checkpoint(tmp_path / "tv.pth")
    assert (ckpt.meta.arch, ckpt.meta.num_classes) == ("torchvision:mobilenet_v3_small", 3)
    x = torch.randn(1, 3, 32, 32, generator=generator)
    torch.testing.assert_close(ckpt.model(x), tv(x), atol=0, rtol=0)
    # an explicit arch wins over the file's
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(tmp_path / "tv.pth", arch="torchvision:resnet18")
