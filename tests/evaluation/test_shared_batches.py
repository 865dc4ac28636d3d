"""Cells that differ only in the model share their (corrupted) batches, and give the same results as alone."""

import numpy as np
import pandas as pd
import torch

from robustbench_lift.evaluation import evaluate
from robustbench_lift.evaluation.executors import LocalExecutor
from robustbench_lift.models import build_model


def _models():
    out = []
    for i, pool in enumerate(("max", "avg", "lift")):
        torch.manual_seed(i)
        m = build_model("convnet", pool=pool, num_classes=10, in_channels=1, widths=(4, 8), convs_per_stage=1)
        m.default_cfg.update({"mean": (0.3,), "std": (0.35 + 0.05 * i,), "input_size": (28, 28)})
        out.append(m.eval())
    return out


class _Counting(LocalExecutor):
    def __init__(self, share_batches):
        super().__init__(share_batches=share_batches)
        self.calls = 0

    def map(self, cells, context):
        from corruptions import api

        original = api.corrupt

        def counted(*a, **k):
            self.calls += 1
            return original(*a, **k)

        import robustbench_lift.evaluation.runner as runner

        runner.corrupt = counted
        try:
            yield from super().map(cells, context)
        finally:
            runner.corrupt = original


def test_shared_batches_give_the_same_results_with_one_corruption_pass(tmp_path):
    kwargs = dict(
        corruptions=["gaussian_noise", "glass_blur", "jpeg_compression"],
        severities=[1, 5],
        limit=24,
        batch_size=10,
        names=["max", "avg", "lift"],
        progress=False,
        n_boot=50,
    )
    shared, alone = _Counting(True), _Counting(False)
    a = evaluate(_models(), "fashion-mnist", "cifar10-c", out=tmp_path / "shared", executor=shared, **kwargs)
    b = evaluate(_models(), "fashion-mnist", "cifar10-c", out=tmp_path / "alone", executor=alone, **kwargs)
    pd.testing.assert_frame_equal(a.results, b.results)
    assert a.cells_run == b.cells_run == 3 * (1 + 3 * 2)
    batches = 3  # 24 images in batches of 10
    assert shared.calls == 3 * 2 * batches  # once per cell of the suite, for all three models
    assert alone.calls == 3 * shared.calls
    for name in ("max", "avg", "lift"):
        for f in sorted((tmp_path / "shared" / "cells" / name).iterdir()):
            with np.load(f) as x, np.load(tmp_path / "alone" / "cells" / name / f.name) as y:
                assert x.files == y.files
                for k in x.files:
                    if k != "__info__":  # holds the cell's timing
                        assert np.array_equal(x[k], y[k]), (f.name, k)
