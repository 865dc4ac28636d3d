import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_lift.schema import RESULT_COLUMNS
from robustbench_lift.store import (
    ConfigMismatchError,
    RunLockedError,
    RunStore,
    StoreError,
    atomic_write_bytes,
    config_differences,
    resolve_run_dir,
    validate_run_name,
)

REPO = Path(__file__).resolve().parents[2]

CONFIG = {
    "seed": 0,
    "dataset": {"spec": "fashion-mnist", "n": 64},
    "limit": 64,
    "models": {"max": {"content_hash": "aaa", "input_size": [28, 28]}},
    "suites": {"cifar10-c": {"params": {"gaussian_noise": [0.04, 0.06]}}},
}


def _row(**kw):
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(
        model="m", pooling="max", arch="a", suite="s", corruption="clean", severity=0, metric="top1_error"
    )
    row.update(value=0.25, ci_low=0.2, ci_high=0.3, n=64, protocol="p")
    row.update(kw)
    return row


@pytest.mark.parametrize("name", ["run1", "lift-vs-max", "a.b_c+d", "X" * 128])
def test_valid_run_names(name):
    assert validate_run_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/abs", "-x", ".hidden", "a b", "x" * 129, "é"]
)
def test_invalid_run_names(name):
    with pytest.raises(ValueError, match="invalid run name"):
        validate_run_name(name)


def test_resolve_run_dir(tmp_path):
    assert resolve_run_dir("demo") == Path("reports/demo")
    assert resolve_run_dir("demo", root=tmp_path) == tmp_path / "demo"
    assert resolve_run_dir(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ValueError, match=r"'\.\.' components"):
        resolve_run_dir("reports/../../etc")
    with pytest.raises(ValueError, match="invalid run name"):
        resolve_run_dir("reports/bad name")
    with pytest.raises(ValueError, match=r"'\.\.' components"):
        RunStore(tmp_path / ".." / "x")


def test_cell_key_validation(tmp_path):
    store = RunStore(tmp_path / "r")
    assert store.cell_path("m/cifar10-c__gaussian_noise__s1").name == "cifar10-c__gaussian_noise__s1.npz"
    for bad in ["m", "m/../x", "../m/x", "m/a/b", "m/"]:
        with pytest.raises(ValueError):
            store.cell_path(bad)


def test_writes_need_the_lock(tmp_path):
    store = RunStore(tmp_path / "r")
    with pytest.raises(RuntimeError, match="must be locked"):
        store.open(CONFIG)


def test_cell_round_trip_and_spec_check(tmp_path):
    with RunStore(tmp_path / "r") as store:
        store.open(CONFIG, info={"command": ["x"]})
        top5 = np.arange(40, dtype=np.int16).reshape(8, 5)
        spec = {"model": "max", "severity": 1, "limit": 64}
        path = store.save_cell("max/clean", spec, {"top5": top5, "labels": np.ones(8, np.int16)}, {"n": 8})
        assert path.exists() and path.parent.name == "max"
        loaded_spec, arrays, info = store.load_cell("max/clean")
        assert loaded_spec == spec and info == {"n": 8}
        np.testing.assert_array_equal(arrays["top5"], top5)
        assert arrays["top5"].dtype == np.int16
        assert store.has_cell("max/clean", spec)
        assert not store.has_cell("max/clean", {**spec, "limit": 32})
        assert not store.has_cell("max/other", spec)
        assert store.cell_keys() == ["max/clean"]
        with pytest.raises(ValueError, match="reserved"):
            store.save_cell("max/x", spec, {"__spec__": top5}, {})


def test_damaged_cell_is_ignored(tmp_path, caplog):
    with RunStore(tmp_path / "r") as store:
        store.open(CONFIG)
        store.save_cell("max/clean", {"a": 1}, {"x": np.zeros(3)}, {})
        store.cell_path("max/clean").write_bytes(b"garbage")
        assert store.load_cell("max/clean") is None
        assert not store.has_cell("max/clean", {"a": 1})
        assert "unreadable cell" in caplog.text


def test_second_process_is_refused(tmp_path):
    run = tmp_path / "r"
    with RunStore(run) as store:
        store.open(CONFIG)
        # same process, second store object: flock is per open file, so this is refused too
        with pytest.raises(RunLockedError, match=r"in use by another process.*run\.lock"):
            RunStore(run).acquire()
        code = textwrap.dedent(
            f"""
            import sys
            from robustbench_lift.store import RunStore, RunLockedError
            try:
                RunStore({str(run)!r}).acquire()
            except RunLockedError as exc:
                print(exc)
                sys.exit(3)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3, proc.stderr
        assert "run.lock" in proc.stdout
    # released: now it can be taken again
    with RunStore(run):
        pass


def test_lock_released_when_holder_is_killed(tmp_path):
    run = tmp_path / "r"
    code = textwrap.dedent(
        f"""
        import sys, time
        from robustbench_lift.store import RunStore
        store = RunStore({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError):
            RunStore(run).acquire()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    with RunStore(run):
        pass


def test_config_change_refused_and_new_run(tmp_path):
    run = tmp_path / "r"
    with RunStore(run) as store:
        store.open(CONFIG)
        store.save_cell("max/clean", {"a": 1}, {"x": np.zeros(3)}, {})
    changed = json.loads(json.dumps(CONFIG))
    changed["seed"] = 1
    changed["models"]["max"]["content_hash"] = "bbb"
    with RunStore(run) as store:
        with pytest.raises(ConfigMismatchError) as err:
            store.open(changed)
        msg = str(err.value)
        assert "seed: stored 0, requested 1" in msg
        assert "models['max'].content_hash: stored 'aaa', requested 'bbb'" in msg
        assert "--new-run" in msg
        # nothing was lost
        assert store.cell_keys() == ["max/clean"]
        assert store.read_manifest()["config"]["seed"] == 0
        # overwrite starts afresh
        manifest = store.open(changed, overwrite=True)
        assert manifest["config"]["seed"] == 1
        assert store.cell_keys() == []
        assert len(manifest["sessions"]) == 1


def test_compatible_growth_is_merged(tmp_path):
    run = tmp_path / "r"
    with RunStore(run) as store:
        store.open(CONFIG, info={"command": ["first"]})
    grown = json.loads(json.dumps(CONFIG))
    grown["models"]["lift"] = {"content_hash": "ccc", "input_size": [28, 28]}
    grown["suites"]["imagenet-c"] = {"params": {}}
    with RunStore(run) as store:
        manifest = store.open(grown, info={"command": ["second"]})
        store.update_session(cells_run=3)
    assert set(manifest["config"]["models"]) == {"max", "lift"}
    assert set(manifest["config"]["suites"]) == {"cifar10-c", "imagenet-c"}
    stored = RunStore(run).read_manifest()
    assert [s["command"] for s in stored["sessions"]] == [["first"], ["second"]]
    assert stored["sessions"][-1]["cells_run"] == 3
    # a subset of the models is compatible too
    subset = json.loads(json.dumps(CONFIG))
    subset["models"] = {}
    assert config_differences(stored["config"], subset) == []


def test_cells_without_manifest_refused(tmp_path):
    run = tmp_path / "r"
    (run / "cells" / "m").mkdir(parents=True)
    (run / "cells" / "m" / "clean.npz").write_bytes(b"x")
    with RunStore(run) as store, pytest.raises(StoreError, match="no manifest.json"):
        store.open(CONFIG)


def test_results_csv_has_exact_columns(tmp_path):
    with RunStore(tmp_path / "r") as store:
        store.open(CONFIG)
        rows = [_row(), _row(metric="mce", value=101.5, ci_low=None, ci_high=None)]
        store.write_results(rows)
        df = store.read_results()
        assert tuple(df.columns) == RESULT_COLUMNS
        assert df["value"].tolist() == [0.25, 101.5]
        assert np.isnan(df["ci_low"].iloc[1])
        with pytest.raises(ValueError, match="outside the schema"):
            store.write_results([{**_row(), "extra": 1}])
        with pytest.raises(ValueError, match="required column 'model'"):
            store.write_results(pd.DataFrame([{"value": 1.0}]))


def test_atomic_write_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_leftover_temporaries_removed_on_open(tmp_path):
    run = tmp_path / "r"
    (run / "cells" / "m").mkdir(parents=True)
    leftover = run / "cells" / "m" / ".tmp-abc.npz"
    leftover.write_bytes(b"partial")
    with RunStore(run) as store:
        assert not leftover.exists()
        assert store.cell_keys() == []
