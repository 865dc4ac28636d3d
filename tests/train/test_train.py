import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from robustbench_lift.checkpoint import load_checkpoint
from robustbench_lift.cli import main
from robustbench_lift.train import (
    augment,
    best_path_for,
    default_flip,
    default_holdout,
    resume_path_for,
    seed_out_path,
    train,
    warmup_cosine,
)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
TINY = {"widths": [4, 8, 8]}


class PatternDataset(torch.utils.data.Dataset):
    """Noisy images of horizontal stripes, vertical stripes or a flat bright patch (classes 0, 1, 2).

    Translation-invariant classes, so a small ConvNet learns them in a few steps.
    """

    def __init__(self, n: int, seed: int, name: str = "patterns", channels: int = 1, size: int = 16) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        imgs = torch.randint(0, 80, (n, channels, size, size), generator=g, dtype=torch.uint8)
        stripes = (torch.arange(size) % 4 < 2).to(torch.uint8) * 150
        for i, k in enumerate(self.labels.tolist()):
            if k == 0:
                imgs[i] += stripes[:, None]
            elif k == 1:
                imgs[i] += stripes[None, :]
            else:
                imgs[i] += 75
        self.images = imgs
        self.name = name
        self.num_classes = 3
        self.class_names = ("horizontal", "vertical", "flat")
        self.channels = channels
        self.image_size = (size, size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


@pytest.fixture(scope="module")
def data():
    return PatternDataset(192, seed=1), PatternDataset(96, seed=2)


def _run(tmp_path, data, name="m", pool="max", **kw):
    train_ds, val_ds = data
    args = dict(
        epochs=2,
        out=tmp_path / f"{name}.safetensors",
        val_dataset=val_ds,
        batch_size=32,
        model_kwargs=TINY,
        optimizer="adamw",
        lr=0.03,
        progress=False,
        num_threads=1,
        crop_padding=1,
    )
    args.update(kw)
    return train("convnet", pool, train_ds, **args)


def test_train_learns_and_writes_checkpoints(tmp_path, data):
    result = _run(tmp_path, data, pool="lift", seed=3)
    assert result.epochs_trained == 2 and result.start_epoch == 0 and len(result.history) == 2
    assert result.final_val_acc > 0.8, result.history
    assert result.history[0]["train_aux_loss"] > 0  # the LiftDownPool auxiliary loss is part of the objective
    assert result.last_path.exists() and result.best_path == best_path_for(result.last_path)
    assert result.best_path.exists() and resume_path_for(result.last_path).exists()

    ckpt = load_checkpoint(result.last_path)
    meta = ckpt.meta
    assert (meta.arch, meta.pool, meta.num_classes, meta.in_channels) == ("convnet", "lift", 3, 1)
    assert tuple(meta.input_size) == (16, 16) and len(meta.mean) == len(meta.std) == 1
    assert list(meta.class_names) == ["horizontal", "vertical", "flat"] and meta.dataset == "patterns"
    tc = meta.train_config
    assert (
        tc["epochs"] == 2 and tc["seed"] == 3 and tc["optimizer"] == "adamw" and tc["val_source"] == "dataset"
    )
    assert tc["final_val_acc"] == pytest.approx(result.final_val_acc) and tc["checkpoint"] == "last"
    assert len(tc["history"]) == 2
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), result.model(x))
    best = load_checkpoint(result.best_path).meta.train_config
    assert best["checkpoint"] == "best" and best["best_val_acc"] == pytest.approx(result.best_val_acc)


def test_max_pool_has_no_aux_loss_and_rng_is_left_alone(tmp_path, data):
    state = torch.get_rng_state()
    result = _run(tmp_path, data, epochs=1)
    assert result.history[0]["train_aux_loss"] == 0
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.are_deterministic_algorithms_enabled()


def test_interrupted_run_resumes_to_the_same_result(tmp_path, data):
    straight = _run(tmp_path, data, name="straight", epochs=3)

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, data, name="resumed", epochs=3, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "resumed.safetensors").meta.train_config["epochs_done"] == 2

    resumed = _run(tmp_path, data, name="resumed", epochs=3)
    assert resumed.start_epoch == 2 and resumed.epochs_trained == 1 and len(resumed.history) == 3
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in straight.history]

    again = _run(tmp_path, data, name="resumed", epochs=3)
    assert again.epochs_trained == 0 and len(again.history) == 3


def test_more_epochs_continue_a_finished_run(tmp_path, data, caplog):
    _run(tmp_path, data, epochs=2)
    with caplog.at_level(logging.WARNING, logger="robustbench_lift.train"):
        more = _run(tmp_path, data, epochs=3)
    assert (
        more.start_epoch == 2 and more.epochs_trained == 1 and [h["epoch"] for h in more.history] == [1, 2, 3]
    )
    assert "LR schedule is stretched" in caplog.text
    with pytest.raises(ValueError, match="already trained 3 epochs, more than the 2 asked for"):
        _run(tmp_path, data, epochs=2)


def test_resume_refuses_other_settings(tmp_path, data):
    _run(tmp_path, data, epochs=1)
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.03 -> 0.02\)"):
        _run(tmp_path, data, epochs=1, lr=0.02)
    fresh = _run(tmp_path, data, epochs=1, lr=0.02, restart=True)
    assert fresh.start_epoch == 0 and fresh.epochs_trained == 1


def test_holdout_and_limits(tmp_path, data):
    result = _run(
        tmp_path, data, epochs=1, val_dataset=None, holdout=40, limit_train=64, limit_val=20, seed=5
    )
    tc = load_checkpoint(result.last_path).meta.train_config
    assert tc["val_source"] == "holdout" and tc["val_images"] == 20 and tc["train_images"] == 64


def test_default_validation_is_a_seeded_holdout_of_the_training_set(tmp_path, data, monkeypatch):
    """Without val_dataset, validation never reads a test split and uses training images training never sees."""
    import robustbench_lift.train.loop as loop

    train_ds = data[0]
    loaded: list[tuple[str, list[int]]] = []
    real_load = loop._load

    def spy(ds, indices):
        loaded.append(("train" if ds is train_ds else "other", indices.tolist()))
        return real_load(ds, indices)

    monkeypatch.setattr(loop, "_load", spy)
    seen_val: list[list[int]] = []
    real_eval = loop._evaluate

    def spy_eval(model, ds, indices, *args):
        assert ds is train_ds
        seen_val.append(indices.tolist())
        return real_eval(model, ds, indices, *args)

    monkeypatch.setattr(loop, "_evaluate", spy_eval)
    result = _run(tmp_path, data, epochs=1, val_dataset=None, seed=4)
    assert all(kind == "train" for kind, _ in loaded)
    tc = load_checkpoint(result.last_path).meta.train_config
    assert tc["val_source"] == "holdout" and tc["holdout"] == default_holdout(192) == 19 and tc["seed"] == 4
    assert tc["val_dataset"] is None and tc["val_images"] == 19 and tc["train_images"] == 192 - 19
    held = set(seen_val[0])
    assert len(held) == 19
    assert loaded[-1][1] == seen_val[0]  # the last load is validation, every one before it is training
    assert held.isdisjoint({i for _, idx in loaded[:-1] for i in idx})
    # the split is seeded: another seed holds out other images
    seen_val.clear()
    _run(tmp_path, data, name="other", epochs=1, val_dataset=None, seed=5)
    assert set(seen_val[0]) != held


def test_holdout_with_limit_train_keeps_the_training_subset(tmp_path, data, monkeypatch):
    """With room outside a --limit-train subset, the held-out images come from the unused ones: the training
    images are those of any other validation choice, and never validation images."""
    import robustbench_lift.train.loop as loop

    seen: list[tuple[str, list[int]]] = []
    real_epoch, real_eval = loop._train_epoch, loop._evaluate

    def spy_epoch(model, opt, sched, ds, train_idx, *args):
        seen.append(("train", train_idx.tolist()))
        return real_epoch(model, opt, sched, ds, train_idx, *args)

    def spy_eval(model, ds, indices, *args):
        seen.append(("val", indices.tolist()))
        return real_eval(model, ds, indices, *args)

    monkeypatch.setattr(loop, "_train_epoch", spy_epoch)
    monkeypatch.setattr(loop, "_evaluate", spy_eval)
    _run(tmp_path, data, name="h", epochs=1, val_dataset=None, limit_train=100, seed=2)
    (_, held_train), (_, held_val) = seen
    seen.clear()
    _run(tmp_path, data, name="d", epochs=1, limit_train=100, seed=2)
    assert seen[0] == ("train", held_train) and len(held_train) == 100
    assert len(held_val) == default_holdout(192) and set(held_val).isdisjoint(held_train)


def test_val_split_test_opens_the_test_split(tmp_path, monkeypatch):
    import robustbench_lift.data as data_mod

    splits = []

    def fake_open(spec, split="train", **kw):
        splits.append(split)
        return PatternDataset(96 if split == "train" else 40, seed=len(splits))

    monkeypatch.setattr(data_mod, "open_dataset", fake_open)
    common = dict(epochs=1, batch_size=32, model_kwargs=TINY, progress=False, num_threads=1)
    res = train("convnet", "max", "patterns", out=tmp_path / "h.safetensors", **common)
    assert splits == ["train"] and res.config.val_source == "holdout"
    res = train("convnet", "max", "patterns", out=tmp_path / "t.safetensors", val_split="test", **common)
    assert splits == ["train", "train", "test"]
    tc = load_checkpoint(res.last_path).meta.train_config
    assert tc["val_source"] == "test" and tc["val_dataset"] == "patterns" and tc["val_images"] == 40


def test_cli_trains_one_model_per_seed_and_resumes(tmp_path, monkeypatch, capsys):
    import robustbench_lift.data as data_mod

    monkeypatch.setattr(
        data_mod, "open_dataset", lambda spec, split="train", **kw: PatternDataset(64, seed=1)
    )
    out = tmp_path / "lift.safetensors"
    argv = [
        "train", "--arch", "convnet", "--pool", "max", "--dataset", "patterns", "--epochs", "1",
        "--out", str(out), "--seeds", "3,7", "--batch-size", "32", "--model-opt", "widths=[4,8,8]",
        "--no-progress", "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    assert not out.exists()
    metas = {s: load_checkpoint(tmp_path / f"lift-seed{s}.safetensors").meta.train_config for s in (3, 7)}
    assert metas[3]["seed"] == 3 and metas[7]["seed"] == 7
    assert all(m["val_source"] == "holdout" for m in metas.values())
    same = {
        k: v
        for k, v in metas[3].items()
        if k not in ("seed", "history", "final_val_acc", "best_val_acc", "best_epoch")
    }
    assert same == {k: v for k, v in metas[7].items() if k in same}  # the same recipe
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("nothing to do") == 2
    with pytest.raises(SystemExit):
        main([*argv[:11], "--seeds", "1,1", *argv[13:]])
    assert "seeds repeat" in capsys.readouterr().err


def test_seed_out_path():
    assert seed_out_path("ck/lift.safetensors", 2) == Path("ck/lift-seed2.safetensors")
    assert best_path_for(seed_out_path("lift.safetensors", 0)).name == "lift-seed0.best.safetensors"


def test_flip_defaults(tmp_path):
    assert not default_flip("mnist") and not default_flip("mnist:/data") and not default_flip("SVHN")
    assert default_flip("fashion-mnist") and default_flip("cifar10:/data") and default_flip("imagefolder:x")
    common = dict(epochs=1, batch_size=32, holdout=16, model_kwargs=TINY, progress=False)
    digits = PatternDataset(48, seed=1, name="mnist")
    assert not train("convnet", "max", digits, out=tmp_path / "d.safetensors", **common).config.flip
    assert train("convnet", "max", digits, out=tmp_path / "f.safetensors", flip=True, **common).config.flip


def test_augment():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 2, 5, 6)
    assert torch.equal(augment(x, 0, False, g), x)
    flipped = augment(x, 0, True, g)
    kinds = [torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x)]
    assert all(kinds)
    assert any(not torch.equal(f, o) for f, o in zip(flipped, x)) and any(
        torch.equal(f, o) for f, o in zip(flipped, x)
    )
    cropped = augment(x, 2, False, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for c, p in zip(cropped, padded):
        windows = [p[:, i : i + 5, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(c, w) for w in windows)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(augment(x, 3, True, g1), augment(x, 3, True, g2))


def test_warmup_cosine():
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)
    assert warmup_cosine(0, 0, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch": "resnet7"}, "unknown model 'resnet7'; valid: convnet"),
        ({"pool": "median"}, "unknown pooling 'median'; valid: max"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; valid: sgd, adamw"),
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"lr": -1.0}, "lr must be a finite number >= 0"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"val_dataset": None, "val_split": "test"}, "val_split='test' needs a dataset spec"),
        ({"val_split": "train"}, "unknown val_split 'train'; valid: holdout, test"),
        (
            {"holdout": 10},
            "holdout=10 is the size of the held-out training split; it does not go with val_dataset",
        ),
        ({"val_dataset": None, "holdout": 192}, "holdout=192 leaves no training images"),
        ({"val_dataset": PatternDataset(8, 0, size=12)}, "val_dataset images are 1x"),
    ],
)
def test_bad_arguments(tmp_path, data, kw, match):
    args = dict(
        arch="convnet",
        pool="max",
        dataset=data[0],
        val_dataset=data[1],
        epochs=1,
        out=tmp_path / "x.safetensors",
    )
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        train(args.pop("arch"), args.pop("pool"), args.pop("dataset"), **args)


def test_bad_dataset_type(tmp_path):
    with pytest.raises(TypeError, match="num_classes"):
        train(
            "convnet",
            "max",
            [(torch.zeros(1, 4, 4), 0)] * 4,
            epochs=1,
            out=tmp_path / "x.safetensors",
            holdout=1,
        )


needs_fmnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


@needs_fmnist
def test_cli_train_and_resume(tmp_path, capsys):
    out = tmp_path / "cli" / "lift.safetensors"
    argv = [
        "train", "--arch", "convnet", "--pool", "lift", "--dataset", "fashion-mnist", "--epochs", "1",
        "--out", str(out), "--limit-train", "64", "--limit-val", "32", "--batch-size", "32",
        "--model-opt", "widths=[4,4,4]", "--pool-opt", "kernel_size=3", "--no-progress", "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "final val accuracy (holdout):" in text and str(out) in text
    with safe_open(str(out), "pt") as fh:
        header = fh.metadata()
    meta = json.loads(next(iter(header.values())))
    assert meta["train_config"]["model_kwargs"] == {"widths": [4, 4, 4]}
    assert meta["train_config"]["flip"] is True and meta["dataset"] == "fashion-mnist"
    ckpt = load_checkpoint(out)
    assert ckpt.meta.input_size == (28, 28) or list(ckpt.meta.input_size) == [28, 28]
    assert main(argv) == 0
    assert "already trained 1 epochs; nothing to do" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    base = ["train", "--arch", "convnet", "--pool", "max", "--dataset", "fashion-mnist", "--epochs", "1"]
    assert main([*base, "--out", str(tmp_path / "a.safetensors"), "--model-opt", "widths"]) == 2
    assert "--model-opt expects KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.safetensors"), "--dataset", "nosuchset"]) == 2
    assert "unknown dataset 'nosuchset'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--arch", "resnet7", "--pool", "max", "--dataset", "x", "--epochs", "1", "--out", "y"])
    assert exc.value.code == 2


@pytest.mark.slow
@needs_fmnist
def test_convnet_learns_fashion_mnist(tmp_path):
    # 3 x 94 steps on 3000 real images: far from converged, but far above chance (0.1)
    result = train(
        "convnet",
        "max",
        "fashion-mnist",
        epochs=3,
        out=tmp_path / "fm.safetensors",
        limit_train=3000,
        limit_val=1000,
        batch_size=32,
        optimizer="adamw",
        lr=3e-3,
        crop_padding=2,
        model_kwargs={"widths": [8, 16, 32]},
        progress=False,
    )
    assert result.final_val_acc > 0.6, result.history
