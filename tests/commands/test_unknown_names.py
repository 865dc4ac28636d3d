"""Unknown probe / corruption / suite names: exit 2, the valid names listed and the closest one suggested."""

import numpy as np
import pytest

from corruptions.registry import close_match, unknown_name
from robustbench_lift.cli import main


def _data():
    from robustbench_lift.data import ArrayDataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 20, 20), dtype=np.uint8)
    return ArrayDataset(
        images, rng.integers(0, 10, size=8), layout="NHW", class_names=[str(i) for i in range(10)], name="toy"
    )


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_close_match_folds_case_and_hyphens_but_only_suggests():
    valid = ["gaussian_noise", "shot_noise", "fog"]
    assert close_match("Gaussian-Noise", valid) == "gaussian_noise"
    assert close_match("gausian_noise", valid) == "gaussian_noise"
    assert close_match("zzzz", valid) is None
    assert unknown_name("probe", "shfit", ["shift", "reconstruction"]) == (
        "unknown probe 'shfit'; valid: shift, reconstruction; did you mean 'shift'?"
    )
    assert unknown_name("probe", "zzzz", ["shift"]) == "unknown probe 'zzzz'; valid: shift"


def test_unknown_probe_is_named_as_a_probe(capsys):
    code, err = _run(["evaluate", "m.safetensors", "--out", "r", "--probe", "shfit"], capsys)
    assert code == 2
    assert "unknown probe 'shfit'" in err and "unknown suite" not in err
    assert "valid: shift, reconstruction" in err and "did you mean 'shift'?" in err


def test_unknown_probe_in_the_python_api():
    from robustbench_lift.evaluation import check_probes

    assert check_probes(["shift"]) == ["shift"]
    with pytest.raises(ValueError, match=r"unknown probe 'Shift'.*did you mean 'shift'\?"):
        check_probes(["shift", "Shift"])


def test_unknown_suite_lists_every_kind_and_suggests(tmp_path):
    from robustbench_lift.evaluation import load_models, plan_cells
    from robustbench_lift.models import build_model

    models = load_models([build_model("convnet", pool="max", num_classes=10, in_channels=1)])
    with pytest.raises(ValueError) as exc:
        plan_cells(models, ["cifar10c"], _data())
    msg = str(exc.value)
    assert msg.startswith("unknown suite 'cifar10c'; ")
    assert "corruption suites: " in msg and "cifar10-c" in msg and "imagenet-c" in msg
    assert "probe suites: shift, reconstruction" in msg and "pgd-linf" in msg and "cifar10-p" in msg
    assert msg.endswith("did you mean 'cifar10-c'?")


def test_unknown_corruption_case_variant_is_refused_with_a_suggestion():
    from robustbench_lift.evaluation import load_models, plan_cells
    from robustbench_lift.models import build_model

    models = load_models([build_model("convnet", pool="max", num_classes=10, in_channels=1)])
    for asked in (["Gaussian-Noise"], ["fog", "Gaussian-Noise"]):
        with pytest.raises(ValueError) as exc:
            plan_cells(models, ["cifar10-c"], _data(), corruptions=asked)
        msg = str(exc.value)
        assert "'Gaussian-Noise'" in msg and "valid: gaussian_noise, shot_noise" in msg, msg
        assert "did you mean 'gaussian_noise'?" in msg, msg


def test_evaluate_cli_unknown_corruption_and_suite_exit_2(tmp_path, capsys):
    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.models import build_model

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, build_model("convnet", pool="max", num_classes=10, in_channels=1))
    base = [
        "evaluate",
        str(ckpt),
        "--dataset",
        "fashion-mnist",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    code, err = _run([*base, "--corruptions", "Gaussian-Noise"], capsys)
    assert code == 2 and "valid: gaussian_noise" in err and "did you mean 'gaussian_noise'?" in err
    code, err = _run([*base, "--suite", "imagenetc"], capsys)
    assert code == 2 and "unknown suite 'imagenetc'" in err and "did you mean 'imagenet-c'?" in err
    assert not (tmp_path / "r" / "cells").exists() or not any((tmp_path / "r" / "cells").iterdir())


def test_corrupt_cli_unknown_corruption_and_suite_exit_2(tmp_path, capsys):
    base = ["corrupt", "--dataset", "fashion-mnist", "--out", str(tmp_path / "c"), "--limit", "2"]
    code, err = _run([*base, "--corruptions", "Gaussian-Noise"], capsys)
    assert code == 2 and "unknown corruptions Gaussian-Noise" in err
    assert "valid: gaussian_noise" in err and "did you mean 'gaussian_noise'?" in err
    code, err = _run([*base, "--suite", "cifar-10-c"], capsys)
    assert code == 2 and "unknown suite 'cifar-10-c'" in err and "did you mean 'cifar10-c'?" in err
