import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lift import metrics
from robustbench_lift.data import ArrayDataset, open_dataset
from robustbench_lift.evaluation import (
    AggregateInput,
    CellSpec,
    EvalContext,
    LocalExecutor,
    Preprocess,
    aggregate_corruption_suite,
    evaluate,
    plan_cells,
    run_cell,
    select_indices,
    summary_table,
)
from robustbench_lift.evaluation.kinds.corruption import JPEG_STORAGE_OPTION
from robustbench_lift.schema import RESULT_COLUMNS
from robustbench_lift.store import ConfigMismatchError, RunStore


class Tiny(nn.Module):
    """A few-hundred-parameter classifier with the toolkit's default_cfg."""

    def __init__(self, pool: str = "max", num_classes: int = 10, in_channels: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.head = nn.Linear(4, num_classes)
        self.calls = 0
        self.default_cfg = {
            "arch": "tiny",
            "pool": pool,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": (16, 16),
            "mean": [0.5] * in_channels,
            "std": [0.25] * in_channels,
        }

    def forward(self, x):
        self.calls += 1
        return self.head(self.pool(torch.relu(self.conv(x))).mean(dim=(2, 3)))


def _data(n: int = 40, channels: int = 1, size: int = 20, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    if channels == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    labels = rng.integers(0, 10, size=n)
    return ArrayDataset(
        images,
        labels,
        layout="NHW" if channels == 1 else "NHWC",
        class_names=[str(i) for i in range(10)],
        name="toy",
    )


def test_select_indices_is_seeded_sorted_subset():
    a = select_indices(100, 10, seed=3)
    assert len(a) == 10 and np.all(np.diff(a) > 0) and a.max() < 100
    np.testing.assert_array_equal(a, select_indices(100, 10, seed=3))
    assert not np.array_equal(a, select_indices(100, 10, seed=4))
    np.testing.assert_array_equal(select_indices(5, None, 0), np.arange(5))
    np.testing.assert_array_equal(select_indices(5, 50, 0), np.arange(5))
    with pytest.raises(ValueError, match="positive"):
        select_indices(5, 0, 0)


def test_cell_spec_key_and_round_trip():
    spec = CellSpec(model="max", suite="cifar10-c", corruption="fog", severity=3, seed=1, limit=64)
    assert spec.key == "max/cifar10-c__fog__s3"
    assert CellSpec(model="m", suite="clean", corruption="clean", severity=0, kind="clean").key == "m/clean"
    assert CellSpec.from_dict(spec.to_dict()) == spec
    other = CellSpec(model="m", suite="s", corruption="c", severity=1, options=(("frames", 3),))
    assert CellSpec.from_dict(other.to_dict()) == other


@pytest.mark.parametrize("kind", ["clean", "corruption"])
def test_predictions_do_not_depend_on_batch_size(kind):
    data = _data()
    model = Tiny()
    pre = Preprocess(channels=1, input_size=(16, 16), mean=(0.5,), std=(0.25,))
    corruption = "gaussian_noise" if kind == "corruption" else "clean"
    spec = CellSpec(
        model="m", suite="cifar10-c", corruption=corruption, severity=3, kind=kind, seed=5, limit=30
    )
    seen = []
    a = run_cell(spec, model, data, batch_size=7, preprocess=pre, progress=seen.append)
    b = run_cell(spec, model, data, batch_size=32, preprocess=pre)
    assert seen == [7, 7, 7, 7, 2]
    for name in ("top5", "labels", "ids"):
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])
    assert a.arrays["top5"].shape == (30, 5) and a.arrays["top5"].dtype == np.int16
    np.testing.assert_array_equal(a.arrays["ids"], select_indices(40, 30, 5))
    assert a.info["n"] == 30
    assert a.info["top1_errors"] == int((a.arrays["top5"][:, 0] != a.arrays["labels"]).sum())


def test_corruption_changes_predictions_and_seed_matters():
    data = _data()
    model = Tiny()
    pre = Preprocess(channels=1, input_size=(16, 16), mean=(0.5,), std=(0.25,))
    clean = run_cell(CellSpec("m", "clean", "clean", 0, kind="clean"), model, data, preprocess=pre)
    noisy = run_cell(CellSpec("m", "cifar10-c", "gaussian_noise", 5, seed=0), model, data, preprocess=pre)
    other = run_cell(CellSpec("m", "cifar10-c", "gaussian_noise", 5, seed=1), model, data, preprocess=pre)
    assert not np.array_equal(clean.arrays["top5"], noisy.arrays["top5"])
    assert not np.array_equal(noisy.arrays["top5"], other.arrays["top5"])


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.default_cfg = {"arch": "nan", "pool": "none", "num_classes": 10, "in_channels": 1}

    def forward(self, x):
        out = torch.zeros(x.shape[0], 10) + self.w
        out[: x.shape[0] // 2] = float("nan")
        return out


def test_nonfinite_logits_count_as_errors_and_warn(tmp_path, caplog):
    data = _data(n=8)
    with caplog.at_level(logging.WARNING):
        r = evaluate(
            [NaNModel()],
            data,
            "cifar10-c",
            out=tmp_path / "r",
            corruptions=["brightness"],
            severities=[1],
            progress=False,
            n_boot=0,
            batch_size=4,
        )
    assert "NaN/inf logits for 8 of 16 images in 2 cell(s)" in caplog.text and "clean: 4 of 8" in caplog.text
    _, arrays, info = RunStore(tmp_path / "r").load_cell("nan/clean")
    assert info["nonfinite"] == 4
    assert (arrays["top5"][[0, 1, 4, 5]] == -1).all()
    clean = r.results.query("corruption == 'clean' and metric == 'top1_error'")["value"].item()
    finite = [2, 3, 6, 7]
    expected = (4 + int((arrays["top5"][finite, 0] != arrays["labels"][finite]).sum())) / 8
    assert clean == pytest.approx(expected)


def test_class_count_mismatch_caught_before_compute(tmp_path):
    model = Tiny(num_classes=7)
    with pytest.raises(ValueError, match=r"predicts 7 classes but dataset 'toy' has 10"):
        evaluate([model], _data(), "cifar10-c", out=tmp_path / "r", progress=False)
    assert model.calls == 0
    assert not (tmp_path / "r").exists()


def test_class_count_inferred_for_models_without_metadata(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with pytest.raises(ValueError, match="predicts 3 classes"):
        plan_cells(
            __import__("robustbench_lift.evaluation").evaluation.load_models([model]), ["cifar10-c"], _data()
        )


def test_plan_cells_validates_and_orders():
    from robustbench_lift.evaluation import load_models

    models = load_models([Tiny(), Tiny(pool="avg")], names=["max", "avg"])
    cells = plan_cells(
        models, ["cifar10-c"], _data(), corruptions=["fog", "contrast"], severities=[1, 2], limit=8
    )
    assert [c.key for c in cells[:2]] == ["max/clean", "avg/clean"]
    assert len(cells) == 2 + 2 * 2 * 2
    assert {c.limit for c in cells} == {8}
    with pytest.raises(ValueError, match="no corruption"):
        plan_cells(models, ["cifar10-c"], _data(), corruptions=["nope"])
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        plan_cells(models, ["nope"], _data())
    with pytest.raises(ValueError, match="invalid model name"):
        load_models([Tiny()], names=["../x"])


def test_evaluate_resumes_refuses_changes_and_grows(tmp_path):
    data = _data()
    kw = dict(
        corruptions=["gaussian_noise", "contrast"], severities=[1, 4], limit=24, progress=False, n_boot=50
    )
    first = evaluate(
        [Tiny(), Tiny(pool="avg", seed=1)], data, "cifar10-c", out=tmp_path / "r", names=["max", "avg"], **kw
    )
    assert first.cells_run == 10 and first.cells_skipped == 0 and first.baseline == "max"
    assert tuple(first.results.columns) == RESULT_COLUMNS
    again = evaluate(
        [Tiny(), Tiny(pool="avg", seed=1)], data, "cifar10-c", out=tmp_path / "r", names=["max", "avg"], **kw
    )
    assert again.cells_run == 0 and again.cells_skipped == 10
    assert (tmp_path / "r" / "results.csv").read_bytes() == _csv(first)
    # a different seed (or different weights under the same name) is refused, nothing lost
    with pytest.raises(ConfigMismatchError, match="seed: stored 0, requested 1"):
        evaluate([Tiny()], data, "cifar10-c", out=tmp_path / "r", names=["max"], seed=1, **kw)
    with pytest.raises(ConfigMismatchError, match=r"models\['max'\]\.content_hash"):
        evaluate([Tiny(seed=9)], data, "cifar10-c", out=tmp_path / "r", names=["max"], **kw)
    assert len(RunStore(tmp_path / "r").cell_keys()) == 10
    # adding a model to a compatible run only runs its cells; the table covers all three
    grown = evaluate(
        [Tiny(seed=2)], data, "cifar10-c", out=tmp_path / "r", names=["third"], baseline="max", **kw
    )
    assert grown.cells_run == 5
    assert set(grown.results["model"]) == {"max", "avg", "third"}
    # new_run starts afresh
    fresh = evaluate(
        [Tiny()], data, "cifar10-c", out=tmp_path / "r", names=["max"], seed=1, new_run=True, **kw
    )
    assert fresh.cells_run == 5 and set(fresh.results["model"]) == {"max"}


def _csv(result) -> bytes:
    return (result.run_dir / "results.csv").read_bytes()


def test_executor_protocol_results_are_stored(tmp_path):
    calls = []

    class Reversed(LocalExecutor):
        def map(self, cells, context: EvalContext):
            calls.append(len(cells))
            for spec in reversed(list(cells)):
                yield spec, context.run(spec)

    kw = dict(corruptions=["fog"], severities=[2], limit=16, progress=False, n_boot=20)
    a = evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "a", executor=Reversed(), **kw)
    b = evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "b", **kw)
    assert calls == [2]
    assert _csv(a) == _csv(b)


def _cells_for(model: str, wrong: dict, n: int, clean_wrong: int) -> dict:
    """Stored-cell stand-ins whose first ``k`` images are top-1 mistakes."""
    labels = np.zeros(n, np.int16)
    ids = np.arange(n)

    def cell(k):
        top5 = np.tile(np.arange(5, dtype=np.int16), (n, 1))  # predicts 0 first: correct
        top5[:k, 0] = 7  # first k images wrong at top-1, still right at top-5
        top5[:k, 1:] = np.array([0, 1, 2, 3])
        return {"top5": top5, "labels": labels, "ids": ids}

    out = {f"{model}/clean": ({"kind": "clean", "model": model}, cell(clean_wrong), {})}
    for (c, s), k in wrong.items():
        spec = {
            "kind": "corruption",
            "model": model,
            "suite": "imagenet-c",
            "corruption": c,
            "severity": s,
            "options": [list(JPEG_STORAGE_OPTION)],
        }
        out[f"{model}/imagenet-c__{c}__s{s}"] = (spec, cell(k), {})
    return out


def test_aggregation_against_hand_computed_values():
    n = 20
    a = _cells_for("a", {("fog", 1): 4, ("fog", 2): 8, ("speckle_noise", 1): 10}, n, clean_wrong=2)
    b = _cells_for("b", {("fog", 1): 2, ("fog", 2): 4, ("speckle_noise", 1): 5}, n, clean_wrong=1)
    at224 = {"arch": "x", "input_size": [224, 224]}
    data = AggregateInput(
        cells={"a": a, "b": b},
        models={"a": {"pooling": "max", **at224}, "b": {"pooling": "lift", **at224}},
        model_order=["a", "b"],
        baseline="a",
        seed=0,
        n_boot=200,
    )
    rows = aggregate_corruption_suite("imagenet-c", IMAGENET_PARAMS, data)
    get = {(r["model"], r["corruption"], r["severity"], r["metric"]): r for r in rows}
    assert get[("b", "clean", 0, "top1_error")]["value"] == pytest.approx(1 / 20)
    assert get[("b", "fog", 2, "top1_error")]["value"] == pytest.approx(4 / 20)
    assert get[("b", "fog", 2, "top5_error")]["value"] == 0.0
    assert get[("b", "fog", 0, "mean_error")]["value"] == pytest.approx(3 / 20)
    # imagenet-c benchmark corruptions are AlexNet-normalised
    alex = metrics.ALEXNET_ERRORS["fog"][:2]
    assert get[("b", "fog", 0, "ce")]["value"] == pytest.approx(100 * (0.1 + 0.2) / sum(alex))
    rel = 100 * ((0.1 - 0.05) + (0.2 - 0.05)) / sum(e - metrics.ALEXNET_CLEAN_ERROR for e in alex)
    assert get[("b", "fog", 0, "relative_ce")]["value"] == pytest.approx(rel)
    assert "AlexNet-normalised" in get[("b", "benchmark", 0, "mce")]["protocol"]
    assert "1 of 15" in get[("b", "benchmark", 0, "mce")]["protocol"]
    # held-out corruptions have no AlexNet entry: normalised by the baseline model
    assert get[("b", "speckle_noise", 0, "ce")]["value"] == pytest.approx(50.0)
    assert get[("a", "held_out", 0, "mce")]["value"] == pytest.approx(100.0)
    assert "baseline model 'a'" in get[("b", "held_out", 0, "mce")]["protocol"]
    # paired differences to the baseline, with CIs
    diff = get[("b", "clean", 0, "top1_error_diff")]
    assert diff["value"] == pytest.approx(-1 / 20)
    assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]
    assert ("a", "clean", 0, "top1_error_diff") not in get
    # CIs bracket the estimate and are reproducible
    r = get[("a", "fog", 2, "top1_error")]
    assert r["ci_low"] < r["value"] < r["ci_high"]
    again = {
        (x["model"], x["corruption"], x["severity"], x["metric"]): x
        for x in aggregate_corruption_suite("imagenet-c", IMAGENET_PARAMS, data)
    }
    assert again[("a", "fog", 2, "top1_error")]["ci_low"] == r["ci_low"]
    # other suites are normalised by the baseline
    for cells in (a, b):
        for spec, _, _ in cells.values():
            if spec["kind"] == "corruption":
                spec["suite"] = "cifar10-c"
    rows = aggregate_corruption_suite("cifar10-c", {}, data)
    get = {(r["model"], r["corruption"], r["severity"], r["metric"]): r for r in rows}
    assert get[("b", "fog", 0, "ce")]["value"] == pytest.approx(50.0)
    assert get[("a", "benchmark", 0, "mce")]["value"] == pytest.approx(100.0)
    assert get[("b", "benchmark", 0, "mce_diff")]["value"] == pytest.approx(-50.0)
    assert math.isnan(get[("b", "benchmark", 0, "mce")]["ci_low"]) is False
    table = summary_table(__import__("pandas").DataFrame(rows))
    assert list(table["model"]) == ["a", "b"]


#: Suite parameters of an imagenet-c suite whose data passed the check against the published pipeline.
IMAGENET_PARAMS = {"reference": {"alexnet": True, "why": ""}}


@pytest.mark.parametrize(
    "params, options, size, why",
    [
        ({}, [list(JPEG_STORAGE_OPTION)], [224, 224], "made before"),
        (
            {"reference": {"alexnet": False, "why": "the data has 10 classes, not ImageNet's 1000"}},
            [list(JPEG_STORAGE_OPTION)],
            [224, 224],
            "10 classes",
        ),
        (IMAGENET_PARAMS, [], [224, 224], "JPEG storage step"),
        (IMAGENET_PARAMS, [list(JPEG_STORAGE_OPTION)], [32, 32], "input is 32x32"),
    ],
)
def test_imagenet_c_outside_the_published_pipeline_is_not_alexnet_normalised(params, options, size, why):
    n = 20
    a = _cells_for("a", {("fog", 1): 4, ("fog", 2): 8}, n, clean_wrong=2)
    b = _cells_for("b", {("fog", 1): 2, ("fog", 2): 4}, n, clean_wrong=1)
    for cells in (a, b):
        for spec, _, _ in cells.values():
            if spec["kind"] == "corruption":
                spec["options"] = options
    info = {"arch": "x", "input_size": size}
    data = AggregateInput(
        cells={"a": a, "b": b},
        models={"a": {"pooling": "max", **info}, "b": {"pooling": "lift", **info}},
        model_order=["a", "b"],
        baseline="a",
        seed=0,
        n_boot=50,
    )
    rows = aggregate_corruption_suite("imagenet-c", params, data)
    assert not [r for r in rows if "AlexNet" in r["protocol"]]
    get = {(r["model"], r["corruption"], r["severity"], r["metric"]): r for r in rows}
    assert get[("b", "fog", 0, "ce")]["value"] == pytest.approx(50.0)  # by the baseline model instead
    mce = get[("b", "benchmark", 0, "mce")]["protocol"]
    assert (
        "baseline model 'a'" in mce and "no row normalised by the published ImageNet-C" in mce and why in mce
    )
    # without a baseline model only the unnormalised mean is left, and it says why
    data.baseline = None
    rows = aggregate_corruption_suite("imagenet-c", params, data)
    assert not [r for r in rows if r["metric"] in ("ce", "mce")]
    mean = [r for r in rows if r["metric"] == "mean_corruption_error" and r["corruption"] == "benchmark"]
    assert mean and all(why in r["protocol"] for r in mean)


def test_relative_mce_leaves_out_corruptions_where_the_baseline_is_not_degraded():
    # baseline "a": fog raises its error (relative CE defined); contrast does not (its error equals the clean error,
    # a denominator of float residue that once gave relative CEs of 1e16)
    n = 20
    a = _cells_for(
        "a", {("fog", 1): 6, ("fog", 2): 8, ("contrast", 1): 3, ("contrast", 2): 3}, n, clean_wrong=3
    )
    b = _cells_for(
        "b", {("fog", 1): 4, ("fog", 2): 6, ("contrast", 1): 5, ("contrast", 2): 7}, n, clean_wrong=2
    )
    for cells in (a, b):
        for spec, _, _ in cells.values():
            if spec["kind"] == "corruption":
                spec["suite"] = "cifar10-c"
    data = AggregateInput(
        cells={"a": a, "b": b},
        models={"a": {"pooling": "max", "arch": "x"}, "b": {"pooling": "lift", "arch": "x"}},
        model_order=["a", "b"],
        baseline="a",
        seed=0,
        n_boot=100,
    )
    rows = aggregate_corruption_suite("cifar10-c", {}, data)
    get = {(r["model"], r["corruption"], r["severity"], r["metric"]): r for r in rows}
    assert ("b", "contrast", 0, "relative_ce") not in get
    rel_fog = 100 * ((4 - 2) + (6 - 2)) / ((6 - 3) + (8 - 3))
    assert get[("b", "fog", 0, "relative_ce")]["value"] == pytest.approx(rel_fog)
    rmce = get[("b", "benchmark", 0, "relative_mce")]
    assert rmce["value"] == pytest.approx(rel_fog)
    assert "excluding contrast" in rmce["protocol"]
    # plain CE is defined for both and averages both
    assert "excluding" not in get[("b", "benchmark", 0, "mce")]["protocol"]
    assert all(abs(r["value"]) < 1e6 for r in rows if math.isfinite(r["value"]))


def test_pregenerated_set_reads_cells(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "c10c"
    root.mkdir()
    n = 6
    for c in ("fog", "contrast"):
        np.save(root / f"{c}.npy", rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(rng.integers(0, 10, size=n), 5))
    model = Tiny(in_channels=3)
    r = evaluate(
        [model], f"cifar10-c:{root}", None, out=tmp_path / "r", severities=[1, 5], progress=False, n_boot=10
    )
    keys = RunStore(tmp_path / "r").cell_keys()
    assert keys == [
        "tiny/cifar10-c__contrast__s1",
        "tiny/cifar10-c__contrast__s5",
        "tiny/cifar10-c__fog__s1",
        "tiny/cifar10-c__fog__s5",
    ]
    assert "clean" not in set(r.results["corruption"])
    spec, arrays, _ = RunStore(tmp_path / "r").load_cell("tiny/cifar10-c__fog__s5")
    assert spec["kind"] == "pregenerated" and len(arrays["ids"]) == n
    with pytest.raises(ValueError, match="pre-generated"):
        evaluate([model], f"cifar10-c:{root}", "imagenet-c", out=tmp_path / "r2", progress=False)


@pytest.mark.skipif(
    not __import__("os").path.isdir("/usr/share/datasets/fashion-mnist"), reason="no Fashion-MNIST"
)
def test_fashion_mnist_end_to_end(tmp_path):
    ds = open_dataset("fashion-mnist")
    r = evaluate(
        [Tiny()],
        ds,
        "cifar10-c",
        out=tmp_path / "r",
        corruptions=["contrast"],
        severities=[2],
        limit=16,
        progress=False,
        n_boot=10,
    )
    assert r.results.query("corruption == 'contrast' and metric == 'top1_error'")["n"].item() == 16


def test_amp_needs_cuda_and_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mixed precision .* CUDA"):
        evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "r", amp="bf16", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "r", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="severities"):
        evaluate([Tiny()], _data(), "cifar10-c", out=tmp_path / "r", severities=[6], progress=False)
    with pytest.raises(ValueError, match="baseline 'nope'"):
        evaluate(
            [Tiny()],
            _data(),
            "cifar10-c",
            out=tmp_path / "r",
            baseline="nope",
            limit=4,
            progress=False,
            corruptions=["fog"],
            severities=[1],
        )


@pytest.mark.gpu
def test_cuda_amp_channels_last_agree_with_cpu():
    data = _data(n=64, channels=3)
    pre = Preprocess(channels=3, input_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    spec = CellSpec(model="m", suite="cifar10-c", corruption="gaussian_noise", severity=2, seed=0)
    cpu = run_cell(spec, Tiny(in_channels=3), data, preprocess=pre)
    gpu = run_cell(
        spec, Tiny(in_channels=3), data, device="cuda", preprocess=pre, amp="bf16", channels_last=True
    )
    assert gpu.info["device"].startswith("cuda")
    np.testing.assert_array_equal(cpu.arrays["ids"], gpu.arrays["ids"])
    agree = (cpu.arrays["top5"][:, 0] == gpu.arrays["top5"][:, 0]).mean()
    assert agree >= 0.9, f"bf16/channels_last top-1 agrees with fp32 CPU on only {agree:.0%} of images"


def test_dataloader_workers_give_the_same_predictions():
    data = _data(n=20)
    pre = Preprocess(channels=1, input_size=(16, 16), mean=(0.5,), std=(0.25,))
    spec = CellSpec(model="m", suite="cifar10-c", corruption="contrast", severity=4, seed=2)
    a = run_cell(spec, Tiny(), data, preprocess=pre, batch_size=6)
    b = run_cell(spec, Tiny(), data, preprocess=pre, batch_size=6, workers=1)
    np.testing.assert_array_equal(a.arrays["top5"], b.arrays["top5"])
    np.testing.assert_array_equal(a.arrays["labels"], b.arrays["labels"])


def _jpeg_bytes(seed: int, size: int = 224) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _image_folders(root, classes: int, per_class: int = 1, size: int = 224) -> list[str]:
    """``root/<wnid>/<i>.JPEG`` with ImageNet-style WordNet-id folder names (the same few encoded files reused)."""
    files = [_jpeg_bytes(i, size) for i in range(3)]
    wnids = [f"n{i:08d}" for i in range(classes)]
    for k, wnid in enumerate(wnids):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{i}.JPEG").write_bytes(files[(k + i) % len(files)])
    return wnids


def _imagenet_c_layout(root, classes: int, per_class: int = 1, severities=(1, 2)) -> None:
    """The pre-generated ImageNet-C layout ``<corruption>/<severity>/<wnid>/*.JPEG`` (224 px), fog only."""
    for sev in severities:
        _image_folders(root / "fog" / str(sev), classes, per_class)


def test_pregenerated_imagenet_c_is_never_resized_and_not_alexnet_normalised_below_1000_classes(tmp_path):
    root = tmp_path / "inc"
    _imagenet_c_layout(root, classes=2, per_class=2)
    model = Tiny(in_channels=3, num_classes=2)
    with pytest.raises(ValueError, match="never resized again"):
        evaluate([model], f"imagenet-c:{root}", None, out=tmp_path / "r", progress=False)
    r = evaluate(
        [model], f"imagenet-c:{root}", None, out=tmp_path / "r", input_size=224, progress=False, n_boot=10
    )
    assert not r.results["protocol"].str.contains("AlexNet").any()
    ce = r.results.query("corruption == 'fog' and metric == 'ce'")
    assert ce["protocol"].item().startswith("CE, normalised by baseline model")
    mce = r.results.query("corruption == 'benchmark' and metric == 'mce'")["protocol"].item()
    assert "the data has 2 classes, not ImageNet's 1000" in mce


def test_pregenerated_1000_class_imagenet_c_is_alexnet_normalised(tmp_path):
    root = tmp_path / "inc"
    _imagenet_c_layout(root, classes=1000)
    model = Tiny(in_channels=3, num_classes=1000)
    r = evaluate(
        [model],
        f"imagenet-c:{root}",
        None,
        out=tmp_path / "r",
        input_size=224,
        progress=False,
        n_boot=10,
        limit=24,
        batch_size=24,
    )
    ce = r.results.query("corruption == 'fog' and metric == 'ce'")
    assert ce["protocol"].item().startswith("CE, AlexNet-normalised")
    errors = r.results.query("corruption == 'fog' and metric == 'top1_error'")["value"].to_numpy()
    assert ce["value"].item() == pytest.approx(100 * errors.sum() / sum(metrics.ALEXNET_ERRORS["fog"][:2]))
    mce = r.results.query("corruption == 'benchmark' and metric == 'mce'")["protocol"].item()
    assert mce.startswith(metrics_protocol_alexnet())


def metrics_protocol_alexnet() -> str:
    from robustbench_lift.schema import Protocol

    return Protocol.MCE_ALEXNET


def _on_the_fly(tmp_path, classes: int, **kw):
    root = tmp_path / "val"
    if not root.exists():
        _image_folders(root, classes, size=240)
    model = Tiny(in_channels=3, num_classes=classes)
    return evaluate(
        [model],
        f"imagefolder:{root}",
        "imagenet-c",
        out=tmp_path / "r",
        input_size=224,
        corruptions=["brightness"],
        severities=[1],
        limit=12,
        batch_size=12,
        progress=False,
        n_boot=10,
        **kw,
    )


def test_on_the_fly_imagenet_c_on_a_10_class_folder_has_no_alexnet_rows(tmp_path):
    r = _on_the_fly(tmp_path, 10)
    assert not r.results["protocol"].str.contains("AlexNet").any()
    assert (r.results["metric"] == "ce").any()  # normalised by the run's (only) model instead
    mce = r.results.query("corruption == 'benchmark' and metric == 'mce'")["protocol"].item()
    assert "no row normalised by the published ImageNet-C reference errors" in mce and "10 classes" in mce


def test_on_the_fly_imagenet_c_on_1000_imagenet_classes_stores_jpeg_85_and_is_alexnet_normalised(tmp_path):
    r = _on_the_fly(tmp_path, 1000)
    ce = r.results.query("corruption == 'brightness' and metric == 'ce'")
    assert ce["protocol"].item().startswith("CE, AlexNet-normalised")
    with RunStore(r.run_dir) as store:
        specs = [spec for _, spec, _, _ in store.iter_cells() if spec["kind"] == "corruption"]
    assert specs and all(["storage", "jpeg85"] in spec["options"] for spec in specs)
    # turning the storage step off re-runs the cells without it, and the AlexNet rows go
    r = _on_the_fly(tmp_path, 1000, jpeg_storage=False)
    assert r.cells_run == 1
    assert not r.results["protocol"].str.contains("AlexNet").any()
    mce = r.results.query("corruption == 'benchmark' and metric == 'mce'")["protocol"].item()
    assert "JPEG storage step" in mce


def test_unknown_corruption_among_known_ones_is_refused():
    from robustbench_lift.evaluation import load_models

    models = load_models([Tiny()])
    with pytest.raises(ValueError, match=r"no suite of the run has the corruption\(s\) \['gausian_noise'\]"):
        plan_cells(models, ["cifar10-c"], _data(), corruptions=["fog", "gausian_noise"])


def test_per_checkpoint_build_options():
    from robustbench_lift.evaluation.models import per_checkpoint

    # once for several checkpoints: a default (native files ignore it); per checkpoint: explicit, None skipped
    got = per_checkpoint({"arch": "convnet", "pool": ["max", None], "num_classes": None}, 2)
    assert got == [({"pool": "max"}, {"arch": "convnet"}), ({}, {"arch": "convnet"})]
    # with one checkpoint a single value is that checkpoint's own, so a native file checks it
    assert per_checkpoint({"arch": "convnet"}, 1) == [({"arch": "convnet"}, {})]
    assert per_checkpoint({"in_channels": [1]}, 3) == [({}, {"in_channels": 1})] * 3
    with pytest.raises(ValueError, match="arch given 2 times for 3 checkpoints"):
        per_checkpoint({"arch": ["a", "b"]}, 3)
