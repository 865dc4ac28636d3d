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
