"""RayExecutor on a real local Ray cluster (2 CPUs): equality with the local executor, sharding, worker deaths,
deterministic failures, and runs resumed across executors.

One cluster serves the whole module; models are a few hundred parameters and runs a few dozen images, so the module
stays well under a minute on two cores. Select with ``-m ray``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lift.data import ArrayDataset
from robustbench_lift.evaluation import CellResult, LocalExecutor, evaluate
from robustbench_lift.evaluation.executors.ray import (
    INSTALL_HINT,
    CellFailedError,
    RayExecutor,
    RayNotInstalledError,
    merge_shards,
    shard_ranges,
)
from robustbench_lift.store import RunStore

pytestmark = pytest.mark.ray

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for the module; test-defined model classes travel to workers by value."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    ray.init(num_cpus=2, include_dashboard=False)
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield ray
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
        ray.shutdown()


class Tiny(nn.Module):
    """A few-hundred-parameter classifier with the toolkit's default_cfg, weights drawn from a seeded generator."""

    def __init__(self, pool: str = "max", in_channels: int = 1, seed: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.head = nn.Linear(4, 10)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.default_cfg = {
            "arch": "tiny",
            "pool": pool,
            "num_classes": 10,
            "in_channels": in_channels,
            "input_size": (16, 16),
            "mean": [0.5] * in_channels,
            "std": [0.25] * in_channels,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.conv(x))).mean(dim=(2, 3)))


class KillsItsWorker(nn.Module):
    """Wraps a model; the first forward pass in a process other than the test's SIGKILLs that process.

    ``marker`` is created (atomically, so only one worker dies) right before the kill: its existence proves the kill
    happened; afterwards every forward pass is the wrapped model's.
    """

    def __init__(self, inner: nn.Module, marker: Path) -> None:
        super().__init__()
        self.inner = inner
        self.marker = str(marker)
        self.driver_pid = os.getpid()
        self.default_cfg = dict(inner.default_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.getpid() != self.driver_pid:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


class RejectsInput(Tiny):
    """Raises on every batch (a deterministic, application-level failure); logs each call to ``calls``."""

    def __init__(self, calls: Path) -> None:
        super().__init__(pool="avg")
        self.calls = str(calls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with open(self.calls, "a", encoding="utf-8") as fh:
            fh.write("call\n")
        raise ValueError("bad input: this model rejects every batch")


class Interrupted(Exception):
    """Stands in for a driver killed part-way."""


class StopsAfter:
    """An executor that yields the first ``n`` cells of another one, then stops the run."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n = inner, n

    def map(self, cells, context):
        it = self.inner.map(cells, context)
        try:
            for i, item in enumerate(it):
                yield item
                if i + 1 == self.n:
                    raise Interrupted
        finally:
            it.close()


def _data(n: int = 30, channels: int = 1, size: int = 20) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    if channels == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    return ArrayDataset(
        images,
        rng.integers(0, 10, size=n),
        layout="NHW" if channels == 1 else "NHWC",
        class_names=[str(i) for i in range(10)],
        name="toy",
    )


KW = dict(
    corruptions=["gaussian_noise", "contrast"], severities=[1, 5], progress=False, n_boot=20, batch_size=8
)


def _stored(run_dir: Path) -> dict[str, tuple[dict, dict]]:
    return {key: (spec, arrays) for key, spec, arrays, _ in RunStore(run_dir).iter_cells()}


def assert_same_run(a: Path, b: Path) -> None:
    """Same cells with the same specs and per-sample arrays, and byte-identical results.csv."""
    ca, cb = _stored(a), _stored(b)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        assert ca[key][0] == cb[key][0], key
        assert sorted(ca[key][1]) == sorted(cb[key][1]), key
        for name, array in ca[key][1].items():
            np.testing.assert_array_equal(array, cb[key][1][name], err_msg=f"{key}:{name}")
    assert (a / "results.csv").read_bytes() == (b / "results.csv").read_bytes()


# ---------------------------------------------------------------------------------------------- without a cluster
def test_shard_ranges_cover_the_images_once():
    assert shard_ranges(10, None) == [None]
    assert shard_ranges(10, 10) == [None]
    for n, size in [(11, 5), (100, 7), (24, 7)]:
        ranges = shard_ranges(n, size)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(0 < stop - start <= size for start, stop in ranges)


def test_merge_shards_concatenates_in_order_and_adds_counts():
    parts = [
        CellResult(
            {"ids": np.array([0, 1]), "top5": np.zeros((2, 5))}, {"n": 2, "top1_errors": 1, "device": "cpu"}
        ),
        CellResult(
            {"ids": np.array([2]), "top5": np.ones((1, 5))}, {"n": 1, "top1_errors": 1, "device": "cuda"}
        ),
    ]
    merged = merge_shards(parts)
    np.testing.assert_array_equal(merged.arrays["ids"], [0, 1, 2])
    assert merged.arrays["top5"].shape == (3, 5)
    assert merged.info == {"n": 3, "top1_errors": 2, "device": "cpu,cuda", "shards": 2}
    with pytest.raises(ValueError, match="different arrays"):
        merge_shards([parts[0], CellResult({"ids": np.array([3])}, {})])


def test_bad_arguments_are_refused():
    pytest.importorskip("ray")
    for kwargs, match in [
        ({"shard_size": 0}, "shard_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"cpus_per_task": 0}, "cpus_per_task"),
        ({"num_gpus_per_task": "many"}, "num_gpus_per_task"),
        ({"address": "auto", "num_cpus": 2}, "num_cpus"),
    ]:
        with pytest.raises(ValueError, match=match):
            RayExecutor(**kwargs)


def test_without_ray_the_error_says_how_to_install(monkeypatch, capsys):
    from robustbench_lift.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(RayNotInstalledError, match=r"robustbench-lift\[ray\]"):
        RayExecutor()
    assert main(["evaluate", "missing.safetensors", "--out", "/nonexistent/r", "--executor", "ray"]) == 2
    assert INSTALL_HINT in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- on the cluster
def test_ray_equals_local_with_and_without_shards(tmp_path, ray_cluster):
    models = lambda: [Tiny("max"), Tiny("avg", seed=1)]  # noqa: E731
    kw = dict(KW, limit=24, names=["max", "avg"])
    evaluate(models(), _data(), "cifar10-c", out=tmp_path / "local", **kw)
    whole = evaluate(models(), _data(), "cifar10-c", out=tmp_path / "ray", executor=RayExecutor(), **kw)
    sharded = evaluate(
        models(), _data(), "cifar10-c", out=tmp_path / "shards", executor=RayExecutor(shard_size=7), **kw
    )
    assert whole.cells_run == sharded.cells_run == 10
    assert_same_run(tmp_path / "local", tmp_path / "ray")
    assert_same_run(tmp_path / "local", tmp_path / "shards")
    _, _, info = RunStore(tmp_path / "shards").load_cell("max/clean")
    assert info["shards"] == 4 and info["n"] == 24


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="no Fashion-MNIST")
def test_builtin_dataset_is_opened_on_the_workers(tmp_path, ray_cluster):
    kw = dict(KW, corruptions=["contrast"], severities=[3], limit=20)
    evaluate([Tiny()], "fashion-mnist", "cifar10-c", out=tmp_path / "local", **kw)
    evaluate(
        [Tiny()], "fashion-mnist", "cifar10-c", out=tmp_path / "ray", executor=RayExecutor(shard_size=8), **kw
    )
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_pregenerated_cells_shard_like_local(tmp_path, ray_cluster):
    rng = np.random.default_rng(0)
    root = tmp_path / "c10c"
    root.mkdir()
    n = 12
    for c in ("fog", "contrast"):
        np.save(root / f"{c}.npy", rng.integers(0, 256, size=(5 * n, 20, 20, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(rng.integers(0, 10, size=n), 5))
    kw = dict(severities=[2], progress=False, n_boot=10, batch_size=4, clean_dataset=_data(n, channels=3))
    model = Tiny(in_channels=3)
    evaluate([model], f"cifar10-c:{root}", None, out=tmp_path / "local", **kw)
    ray_run = evaluate(
        [model], f"cifar10-c:{root}", None, out=tmp_path / "ray", executor=RayExecutor(shard_size=5), **kw
    )
    assert ray_run.cells_run == 3
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_killed_worker_is_retried_and_results_are_undisturbed(tmp_path, ray_cluster):
    kw = dict(KW, corruptions=["contrast"], limit=16, names=["tiny"])
    evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "local", **kw)
    marker = tmp_path / "killed"
    model = KillsItsWorker(Tiny(), marker)
    # without retries the killed cell fails the run, after the other cells are stored
    with pytest.raises(CellFailedError, match="could not be computed"):
        evaluate(
            [model], _data(), "cifar10-c", out=tmp_path / "ray", executor=RayExecutor(max_retries=0), **kw
        )
    assert marker.exists()
    assert len(RunStore(tmp_path / "ray").cell_keys()) == 2
    # with retries the worker dies again, the task is retried on a fresh worker and the run completes
    marker.unlink()
    run = evaluate(
        [model], _data(), "cifar10-c", out=tmp_path / "ray", executor=RayExecutor(max_retries=2), **kw
    )
    assert marker.exists()
    assert (run.cells_run, run.cells_skipped) == (1, 2)
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_deterministic_error_fails_the_run_after_the_other_cells(tmp_path, ray_cluster):
    calls = tmp_path / "calls"
    kw = dict(KW, limit=16, names=["good", "bad"])
    with pytest.raises(ValueError, match="rejects every batch"):
        evaluate(
            [Tiny(), RejectsInput(calls)],
            _data(),
            "cifar10-c",
            out=tmp_path / "r",
            executor=RayExecutor(),
            **kw,
        )
    keys = RunStore(tmp_path / "r").cell_keys()
    assert keys == sorted(k for k in keys if k.startswith("good/")) and len(keys) == 5
    # an application error is not retried: one call per failed cell
    assert calls.read_text().count("call") == 5


@pytest.mark.parametrize(
    "suite, kw",
    [
        ("shift", {"corruptions": ["circular"]}),
        ("cifar10-p", {"corruptions": ["translate"], "severities": [1]}),
    ],
)
def test_plugin_suite_kinds_run_on_workers(tmp_path, ray_cluster, suite, kw):
    kw = dict(kw, limit=6, progress=False, n_boot=10)
    evaluate([Tiny()], _data(), suite, out=tmp_path / "local", **kw)
    evaluate([Tiny()], _data(), suite, out=tmp_path / "ray", executor=RayExecutor(shard_size=4), **kw)
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_a_task_no_node_can_hold_is_refused_on_a_local_instance(ray_cluster):
    from robustbench_lift.evaluation import EvalContext

    context = EvalContext(models={}, dataset=_data(), workers=2)
    executor = RayExecutor(cpus_per_task=1)
    with pytest.raises(ValueError, match=r"asks for 3 CPU\(s\).*lower --workers"):
        executor._task_resources(ray_cluster, context, local=True)
    assert executor._task_resources(ray_cluster, EvalContext(models={}, dataset=_data()), local=True) == (
        1,
        0.0,
        "cpu",
    )


def test_run_resumes_across_executors(tmp_path, ray_cluster):
    kw = dict(KW, limit=16, names=["tiny"])
    evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "full", **kw)
    for first, second, name in [
        (LocalExecutor(), RayExecutor(), "local-then-ray"),
        (RayExecutor(), None, "ray-then-local"),
    ]:
        with pytest.raises(Interrupted):
            evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / name, executor=StopsAfter(first, 2), **kw)
        assert len(RunStore(tmp_path / name).cell_keys()) == 2
        run = evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / name, executor=second, **kw)
        assert (run.cells_run, run.cells_skipped) == (3, 2), name
        assert_same_run(tmp_path / "full", tmp_path / name)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="no Fashion-MNIST")
def test_cli_executor_ray_equals_local(tmp_path, ray_cluster, capsys):
    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.cli import main
    from robustbench_lift.models import build_model

    ckpt = save_checkpoint(
        tmp_path / "max.safetensors",
        build_model("convnet", pool="max", num_classes=10, in_channels=1, widths=(4, 8)),
    )
    common = [str(ckpt), "--dataset", "fashion-mnist", "--corruptions", "fog", "--severities", "2"]
    common += ["--limit", "12", "--n-boot", "10", "--no-progress"]
    assert main(["evaluate", *common, "--out", str(tmp_path / "local")]) == 0
    assert main(["evaluate", *common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert "cells run 2" in capsys.readouterr().out
    assert_same_run(tmp_path / "local", tmp_path / "ray")


@pytest.mark.parametrize("shard_size", [None, 5])
def test_truncated_pregenerated_file_fails_only_its_cells(tmp_path, ray_cluster, shard_size):
    rng = np.random.default_rng(0)
    root = tmp_path / "c10c"
    root.mkdir()
    n = 12
    for c in ("fog", "contrast"):
        np.save(root / f"{c}.npy", rng.integers(0, 256, size=(5 * n, 20, 20, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(rng.integers(0, 10, size=n), 5))
    raw = (root / "fog.npy").read_bytes()
    (root / "fog.npy").write_bytes(raw[: len(raw) // 2])
    kw = dict(severities=[2], progress=False, n_boot=0, batch_size=4)
    run = evaluate(
        [Tiny(in_channels=3)],
        f"cifar10-c:{root}",
        None,
        out=tmp_path / "ray",
        executor=RayExecutor(shard_size=shard_size),
        **kw,
    )
    assert (
        list(run.failed) == ["tiny/cifar10-c__fog__s2"]
        and "fog.npy' is truncated" in run.failed["tiny/cifar10-c__fog__s2"]
    )
    assert RunStore(tmp_path / "ray").cell_keys() == ["tiny/cifar10-c__contrast__s2"]
