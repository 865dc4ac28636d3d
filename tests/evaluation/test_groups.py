import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_lift.checkpoint import save_checkpoint
from robustbench_lift.evaluation import load_models
from robustbench_lift.evaluation.groups import group_id, recipe, training_seed
from robustbench_lift.models import build_model
from robustbench_lift.schema import CORE_RESULT_COLUMNS, RESULT_COLUMNS, result_row, with_seed_columns

RECIPE = {
    "arch": "convnet",
    "pool": "max",
    "dataset": "patterns",
    "epochs": 2,
    "lr": 0.05,
    "val_source": "holdout",
}


def _config(seed, **kw):
    return {
        **RECIPE,
        "seed": seed,
        "history": [{"val_acc": 0.5 + seed / 100}],
        "final_val_acc": 0.5 + seed,
        **kw,
    }


def _save(tmp_path, name, pool, train_config):
    torch.manual_seed(0)
    model = build_model(
        "convnet", pool=pool, num_classes=3, in_channels=1, input_size=(16, 16), widths=[4, 8, 8]
    )
    return save_checkpoint(tmp_path / f"{name}.safetensors", model, train_config=train_config)


def test_seed_and_recipe():
    assert (
        training_seed(_config(3)) == 3
        and training_seed(None) is None
        and training_seed({"seed": True}) is None
    )
    assert recipe("convnet", "max", _config(0)) == recipe("convnet", "max", _config(1))
    assert recipe("convnet", "max", None) is None
    a, b = group_id("m0", "convnet", "max", _config(0)), group_id("m1", "convnet", "max", _config(7))
    assert a == b and a.startswith("convnet-max-") and len(a) == len("convnet-max-") + 8
    assert group_id("m", "convnet", "max", _config(0, lr=0.1)) != a  # another recipe
    assert group_id("m", "convnet", "avg", _config(0)) != a  # another pooling
    assert group_id("m", "convnet", "max", _config(0, checkpoint="best")) != a  # best vs last checkpoint
    assert group_id("ext", "resnet18", "max", None) == "ext"  # no training record: a group of its own


def test_load_models_records_seed_and_group(tmp_path):
    paths = [
        _save(tmp_path, "max-seed0", "max", _config(0)),
        _save(tmp_path, "max-seed1", "max", _config(1)),
        _save(tmp_path, "lift-seed0", "lift", {**_config(0), "pool": "lift"}),
        _save(tmp_path, "bare", "max", None),
    ]
    entries = {e.name: e for e in load_models(paths)}
    assert [entries[n].seed for n in ("max-seed0", "max-seed1", "lift-seed0", "bare")] == [0, 1, 0, None]
    assert entries["max-seed0"].group == entries["max-seed1"].group != entries["lift-seed0"].group
    assert entries["bare"].group == "bare"
    ident = entries["max-seed1"].identity()
    assert ident["seed"] == 1 and ident["group"] == entries["max-seed0"].group
    row = result_row({"model": "max-seed1", **ident}, "s", "clean", 0, "top1_error", 0.1, (0.0, 0.2), 5, "p")
    assert tuple(row) == RESULT_COLUMNS and row["seed"] == 1 and row["group"] == ident["group"]


def test_tables_without_seed_columns_still_read():
    old = pd.DataFrame(
        [
            dict.fromkeys(CORE_RESULT_COLUMNS, "x") | {"model": "a"},
            dict.fromkeys(CORE_RESULT_COLUMNS, "x") | {"model": "b"},
        ]
    )
    filled = with_seed_columns(old)
    assert list(filled["group"]) == ["a", "b"] and list(filled["seed"]) == ["", ""]
    mixed = filled.assign(seed=[2.0, float("nan")], group=["g", float("nan")])
    again = with_seed_columns(mixed)
    assert list(again["seed"]) == [2, ""] and list(again["group"]) == ["g", "b"]


@pytest.mark.parametrize("seed", ["", None, "x"])
def test_result_row_without_seed(seed):
    row = result_row({"model": "m", "seed": seed}, "s", "clean", 0, "top1_error", 0.1, (0.0, 0.2), 5, "p")
    assert row["seed"] == "" and row["group"] == "m"


def test_evaluate_writes_the_seed_table(tmp_path):
    from robustbench_lift.data import ArrayDataset
    from robustbench_lift.evaluation import evaluate
    from robustbench_lift.metrics.seeds import IMAGES_ONLY, SEED_TABLE_COLUMNS, SEEDS_AND_IMAGES

    rng = np.random.default_rng(0)
    data = ArrayDataset(
        rng.integers(0, 256, size=(24, 16, 16), dtype=np.uint8),
        rng.integers(0, 3, size=24),
        layout="NHW",
        class_names=["a", "b", "c"],
        name="toy",
    )
    paths = []
    for pool in ("max", "lift"):
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = build_model(
                "convnet", pool=pool, num_classes=3, in_channels=1, input_size=(16, 16), widths=[4, 8, 8]
            )
            cfg = {**RECIPE, "pool": pool, "seed": seed}
            paths.append(
                save_checkpoint(tmp_path / f"{pool}-seed{seed}.safetensors", model, train_config=cfg)
            )
    paths.append(_save(tmp_path, "bare", "avg", None))
    run = evaluate(
        paths, data, "cifar10-c", out=tmp_path / "run", corruptions=["fog", "contrast"], severities=[1, 2],
        progress=False, n_boot=50, baseline="max-seed0",
    )  # fmt: skip
    results = run.results
    assert set(results["group"]) == {
        group_id("", "convnet", "max", {**RECIPE, "pool": "max"}),
        group_id("", "convnet", "lift", {**RECIPE, "pool": "lift"}),
        "bare",
    }
    assert sorted(results.drop_duplicates("model")["seed"].tolist(), key=str) == ["", 0, 0, 1, 1]
    seeds = pd.read_csv(tmp_path / "run" / "seeds.csv", keep_default_na=False)
    assert tuple(seeds.columns) == SEED_TABLE_COLUMNS and len(seeds) == len(run.seeds)
    max_group = results.loc[results["model"] == "max-seed0", "group"].iloc[0]
    lift_group = results.loc[results["model"] == "lift-seed0", "group"].iloc[0]
    mce = seeds[(seeds["metric"] == "mce") & (seeds["compared_to"] == "")].set_index("group")
    assert mce.loc[lift_group, "n_seeds"] == 2 and mce.loc[lift_group, "interval"] == SEEDS_AND_IMAGES
    per_model = results[(results["metric"] == "mce") & (results["corruption"] == "benchmark")].set_index(
        "model"
    )
    want = (per_model.loc["lift-seed0", "value"] + per_model.loc["lift-seed1", "value"]) / 2
    assert mce.loc[lift_group, "value"] == pytest.approx(want)
    assert mce.loc["bare", "interval"] == IMAGES_ONLY
    diff = seeds[(seeds["metric"] == "mce") & (seeds["group"] == lift_group) & (seeds["compared_to"] != "")]
    assert diff["compared_to"].tolist() == [max_group]
    assert diff["value"].iloc[0] == pytest.approx(want - mce.loc[max_group, "value"])
    from robustbench_lift.report.answer import answer_lines

    lines = answer_lines(run.seeds)
    assert any(t.startswith("lift vs max: mCE ") and "2 seeds x 24 images" in t for t in lines)
    assert any(t.startswith("avg vs max: mCE ") and "image sampling only" in t for t in lines)
