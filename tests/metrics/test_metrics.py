"""Metric formulas against hand-computed values - through the evaluator's own aggregation of stored cells, so the
tests cover the code a run executes - and bootstrap / paired-bootstrap behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_lift.evaluation import AggregateInput, aggregate_corruption_suite
from robustbench_lift.metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    BENCHMARK_CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    alexnet_table,
    bootstrap_ci,
    corruption_error,
    paired_bootstrap_diff,
    relative_ce,
    top1_error,
    top1_mistakes,
    topk_error,
)
from robustbench_lift.metrics.bootstrap import Resampler

# The "mean" column of the published AlexNet table: an independent check of the transcribed rows.
ALEXNET_MEANS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}


# ---------------------------------------------------------------------------------------------- top-k errors


def test_top1_error_hand_values() -> None:
    assert top1_error(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 0])) == 0.5
    # a negative prediction (no valid logits) is always a mistake
    assert top1_error(np.array([-1, 1]), np.array([0, 1])) == 0.5
    # ordered top-k predictions: column 0 is the top-1
    assert top1_error(np.array([[0, 1], [2, 1], [1, 0]]), np.array([0, 1, 0])) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(top1_mistakes([3, 4], [3, 5]), [False, True])


def test_topk_error_hand_values() -> None:
    topk = np.array([[1, 0], [2, 3], [0, 1]])
    labels = np.array([0, 1, 0])
    assert topk_error(topk, labels) == pytest.approx(1 / 3)
    assert topk_error(topk, labels, k=1) == pytest.approx(2 / 3)


def test_error_input_validation() -> None:
    with pytest.raises(ValueError, match="not logits"):
        top1_error(np.array([0.1, 0.9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        top1_error(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="k must be in 1..2"):
        topk_error(np.zeros((3, 2), int), np.zeros(3, int), k=5)
    with pytest.raises(ValueError, match="zero images"):
        top1_error(np.zeros(0, int), np.zeros(0, int))


# ------------------------------------------------------------------------------------------ CE / mCE formulas


def test_corruption_error_and_relative_ce_hand_values() -> None:
    assert corruption_error([0.2, 0.4], [0.4, 0.6]) == pytest.approx(60.0)
    # (0.2 + 0.4) / (0.3 + 0.5) with clean errors 0.1 (model) and 0.2 (base)
    assert relative_ce([0.3, 0.5], 0.1, [0.5, 0.7], 0.2) == pytest.approx(75.0)
    with pytest.raises(ValueError, match="ratio is undefined"):
        relative_ce([0.3, 0.5], 0.1, [0.2, 0.2], 0.2)
    with pytest.raises(ValueError, match="2 severities, baseline 3"):
        corruption_error([0.2, 0.4], [0.4, 0.6, 0.7])


def _aggregate(
    tables: dict[str, dict[str, list[float]]],
    *,
    clean: dict[str, float] | None = None,
    suite: str = "imagenet-c",
    n: int = 50_000,
    baseline: str | None = None,
    n_boot: int = 0,
) -> dict[tuple[str, str, str], float]:
    """Run the evaluator's aggregation over stored cells whose top-1 errors are exactly the given fractions.

    ``tables``: ``{model: {corruption: [E(s) for s = 1, 2, ...]}}``; image ``i`` is wrong in a cell when
    ``i < round(E * n)``. Returns ``{(model, corruption, metric): value}`` for the severity-aggregated rows.
    """
    labels = np.zeros(n, dtype=np.int16)
    ids = np.arange(n, dtype=np.int64)

    def arrays(error: float) -> dict[str, np.ndarray]:
        top = np.zeros((n, 1), dtype=np.int16)
        top[: round(error * n), 0] = 1
        return {"top5": top, "labels": labels, "ids": ids}

    cells: dict = {}
    for model, table in tables.items():
        mine = cells.setdefault(model, {})
        if clean is not None:
            mine[f"{model}/clean"] = (
                {"kind": "clean", "suite": "clean", "corruption": "clean"},
                arrays(clean[model]),
                {},
            )
        for c, errs in table.items():
            for s, e in enumerate(errs, 1):
                # cells of the published pipeline: on-the-fly imagenet-c cells are stored as JPEG-85 files
                spec = {
                    "kind": "corruption",
                    "suite": suite,
                    "corruption": c,
                    "severity": s,
                    "options": [["storage", "jpeg85"]],
                }
                mine[f"{model}/{c}/{s}"] = (spec, arrays(e), {})
    data = AggregateInput(
        cells=cells,
        models={m: {"pooling": m, "arch": "toy", "input_size": [224, 224]} for m in tables},
        model_order=list(tables),
        baseline=baseline,
        seed=0,
        n_boot=n_boot,
    )
    # the suite parameters of 1000-class ImageNet data (what resolving the suite on such data records)
    params = {"reference": {"alexnet": True, "why": ""}} if suite == "imagenet-c" else {}
    rows = aggregate_corruption_suite(suite, params, data)
    return {(r["model"], r["corruption"], r["metric"]): r["value"] for r in rows if r["severity"] == 0}


def test_baseline_normalised_mce_relative_mce_and_unnormalised_mean() -> None:
    base = {"gaussian_noise": [0.4, 0.6], "shot_noise": [0.4, 0.4]}
    model = {"gaussian_noise": [0.2, 0.4], "shot_noise": [0.1, 0.1]}
    out = _aggregate(
        {"max": base, "lift": model},
        clean={"max": 0.1, "lift": 0.05},
        suite="cifar10-c",
        n=1000,
        baseline="max",
    )
    assert out[("lift", "gaussian_noise", "ce")] == pytest.approx(60.0)
    assert out[("lift", "shot_noise", "ce")] == pytest.approx(25.0)
    assert out[("lift", "benchmark", "mce")] == pytest.approx(42.5)
    assert out[("lift", "benchmark", "mean_corruption_error")] == pytest.approx(0.2)
    assert out[("lift", "gaussian_noise", "relative_ce")] == pytest.approx(100 * (0.15 + 0.35) / (0.3 + 0.5))
    rel_b = 100 * (0.05 + 0.05) / (0.3 + 0.3)
    assert out[("lift", "benchmark", "relative_mce")] == pytest.approx((62.5 + rel_b) / 2)
    assert out[("max", "benchmark", "mce")] == pytest.approx(100.0)
    assert out[("lift", "benchmark", "mce_diff")] == pytest.approx(42.5 - 100.0)


def test_alexnet_table_matches_published_means() -> None:
    assert tuple(ALEXNET_ERRORS) == BENCHMARK_CORRUPTIONS
    for name, mean in ALEXNET_MEANS.items():
        assert np.mean(ALEXNET_ERRORS[name]) == pytest.approx(mean, abs=1e-6), name
    assert alexnet_table().shape == (15, 5)
    np.testing.assert_allclose(alexnet_table(["fog"], severities=[2, 5]), [[0.76050, 0.94500]])
    with pytest.raises(ValueError, match="no AlexNet errors for \\['spatter'\\]"):
        alexnet_table(["spatter"])


def test_alexnet_itself_scores_100() -> None:
    out = _aggregate(
        {"alexnet": {c: list(v) for c, v in ALEXNET_ERRORS.items()}}, clean={"alexnet": ALEXNET_CLEAN_ERROR}
    )
    assert out[("alexnet", "benchmark", "mce")] == pytest.approx(100.0)
    assert out[("alexnet", "benchmark", "relative_mce")] == pytest.approx(100.0)
    assert all(out[("alexnet", c, "ce")] == pytest.approx(100.0) for c in BENCHMARK_CORRUPTIONS)
    assert out[("alexnet", "benchmark", "mean_corruption_error")] == pytest.approx(
        np.mean(list(ALEXNET_MEANS.values()))
    )


def test_alexnet_normalisation_by_hand() -> None:
    # brightness at 0.5 on every severity, clean error 0.3: CE and relative CE by hand from the published table
    flat = {c: [0.5] * 5 for c in BENCHMARK_CORRUPTIONS}
    out = _aggregate({"m": flat}, clean={"m": 0.3})
    sum_brightness = 0.45140 + 0.48502 + 0.54048 + 0.62166 + 0.72440  # 2.82296
    assert out[("m", "brightness", "ce")] == pytest.approx(100 * 2.5 / sum_brightness)
    assert out[("m", "brightness", "relative_ce")] == pytest.approx(
        100 * 5 * 0.2 / (sum_brightness - 5 * 0.43478)
    )
    assert out[("m", "benchmark", "mce")] == pytest.approx(
        np.mean([100 * 0.5 / m for m in ALEXNET_MEANS.values()])
    )
    assert out[("m", "brightness", "mean_error")] == pytest.approx(0.5)


def test_alexnet_normalisation_on_a_subset_of_severities() -> None:
    # fog evaluated at severities 1 and 2 only: the CE uses AlexNet's columns 1 and 2
    out = _aggregate({"m": {"fog": [0.5, 0.9]}})
    assert out[("m", "fog", "ce")] == pytest.approx(100 * 1.4 / (0.67474 + 0.76050))
    assert ("m", "fog", "relative_ce") not in out  # no clean cell, no relative CE


def test_corruption_lists_agree_with_the_suite() -> None:
    suites = pytest.importorskip("corruptions.suites")
    suite = suites.get_suite("imagenet-c")
    assert tuple(suite.benchmark) == BENCHMARK_CORRUPTIONS
    assert tuple(suite.held_out) == HELD_OUT_CORRUPTIONS


# ------------------------------------------------------------------------------------------------- bootstrap


def test_resampler_columns_are_means_under_image_counts() -> None:
    # column 0 is the plain mean; every other column averages the images with integer counts that sum to N
    x = np.random.default_rng(5).random((2, 7))
    vec = Resampler(7, 40, 11).vectors(x)
    np.testing.assert_allclose(vec[:, 0], x.mean(axis=1))
    counts = Resampler(7, 40, 11).vectors(np.eye(7)) * 7  # (7 images, 1 + 40): the counts of each image
    np.testing.assert_allclose(counts[:, 1:].sum(axis=0), 7.0)
    np.testing.assert_allclose(counts[:, 1:], np.round(counts[:, 1:]))
    np.testing.assert_allclose(vec[:, 1:], x @ counts[:, 1:] / 7)
    # the same (seed, keys) give the same resamples; other keys other ones
    np.testing.assert_array_equal(Resampler(7, 40, 11, "a").vectors(x), Resampler(7, 40, 11, "a").vectors(x))
    assert not np.array_equal(Resampler(7, 40, 11, "a").vectors(x), Resampler(7, 40, 11, "b").vectors(x))


def test_bootstrap_ci_basic_properties() -> None:
    rng = np.random.default_rng(1)
    small = rng.random(200) < 0.3
    large = rng.random(5000) < 0.3
    r_small = bootstrap_ci(lambda m: m, small, n_boot=500, seed=3)
    r_large = bootstrap_ci(lambda m: m, large, n_boot=500, seed=3)
    for r, x in ((r_small, small), (r_large, large)):
        assert r.estimate == pytest.approx(x.mean())
        assert r.low <= r.estimate <= r.high
        # percentile CI of a proportion ~ +-1.96 standard errors
        se = np.sqrt(x.mean() * (1 - x.mean()) / len(x))
        assert r.high - r.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert r_large.high - r_large.low < 0.4 * (r_small.high - r_small.low)
    assert bootstrap_ci(lambda m: m, small, n_boot=500, seed=3) == r_small
    assert bootstrap_ci(lambda m: m, small, n_boot=500, seed=4) != r_small
    assert r_small.significant  # an error rate of ~0.3 is far from 0


def test_bootstrap_mce_over_cells_uses_one_resample_for_all_cells() -> None:
    rng = np.random.default_rng(2)
    table = alexnet_table(["fog", "snow"])
    mistakes = rng.random((2, 5, 1000)) < (0.6 * table)[..., None]

    def ce_mean(e):
        return np.mean([corruption_error(e[i], table[i][:, None]) for i in range(2)], axis=0)

    r = bootstrap_ci(ce_mean, mistakes, n_boot=300)
    assert r.estimate == pytest.approx(ce_mean(mistakes.mean(-1)[..., None])[0])
    assert r.low < r.estimate < r.high and r.n == 1000 and r.n_boot == 300
    # identical copies of one cell stay identical under every resample: the draw is shared by all cells
    same = np.stack([mistakes[0, 0], mistakes[0, 0]])
    r_same = bootstrap_ci(lambda m: m[0] - m[1], same, n_boot=100)
    assert (r_same.estimate, r_same.low, r_same.high) == (0.0, 0.0, 0.0)


def test_paired_diff_flags_an_obviously_better_model() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    worse = rng.random(n) < 0.4
    better = worse & (rng.random(n) > 0.25)  # fixes a quarter of the mistakes, adds none
    r = paired_bootstrap_diff(lambda m: m, better, worse, n_boot=500)
    assert r.estimate == pytest.approx(better.mean() - worse.mean())
    assert r.high < 0 and r.significant
    same = paired_bootstrap_diff(lambda m: m, worse, worse.copy(), n_boot=200)
    assert same.estimate == 0.0 and not same.significant


def test_paired_ci_is_narrower_than_unpaired_for_correlated_models() -> None:
    rng = np.random.default_rng(4)
    a = rng.random(3000) < 0.35
    b = a.copy()
    flip = rng.choice(3000, size=30, replace=False)
    b[flip] = ~b[flip]
    paired = paired_bootstrap_diff(lambda m: m, a, b, n_boot=400)
    ra = bootstrap_ci(lambda m: m, a, n_boot=400)
    assert paired.high - paired.low < 0.3 * (ra.high - ra.low)


def test_paired_diff_with_shared_baseline_arrays() -> None:
    rng = np.random.default_rng(6)
    base = rng.random((2, 5, 800)) < 0.6
    a = rng.random((2, 5, 800)) < 0.3
    b = rng.random((2, 5, 800)) < 0.5

    def stat(model, baseline):
        return np.mean([corruption_error(model[i], baseline[i]) for i in range(2)], axis=0)

    r = paired_bootstrap_diff(stat, a, b, common=[base], n_boot=200)
    expected = (
        stat(a.mean(-1)[..., None], base.mean(-1)[..., None])[0]
        - stat(b.mean(-1)[..., None], base.mean(-1)[..., None])[0]
    )
    assert r.estimate == pytest.approx(expected)
    assert r.high < 0 and r.significant


def test_bootstrap_input_validation() -> None:
    x = np.zeros(10)
    with pytest.raises(ValueError, match="one value per resample"):
        bootstrap_ci(lambda m: m.sum(), x, n_boot=10)
    with pytest.raises(ValueError, match="disagree on the number of images"):
        bootstrap_ci(lambda a, b: a - b, x, np.zeros(11), n_boot=10)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(lambda m: m, np.array([0.0, np.nan]), n_boot=10)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(lambda m: m, x, alpha=1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap_diff(lambda m: m.mean(0), np.zeros((2, 10)), np.zeros((3, 10)), n_boot=10)


def test_relative_ce_is_undefined_when_the_baseline_is_not_degraded():
    # equal error sums leave float residue (~1e-17), not an exact zero: still undefined, never a ratio of 1e16
    base = [0.12 + 0.01, 0.13 - 0.01]
    with pytest.raises(ValueError, match="does not grow"):
        relative_ce([0.2, 0.3], 0.1, base, 0.125)
    with pytest.raises(ValueError, match="does not grow"):  # the baseline improves under the corruption
        relative_ce([0.2, 0.3], 0.1, [0.05, 0.05], 0.125)
    assert relative_ce([0.2, 0.3], 0.1, [0.2, 0.25], 0.1) == pytest.approx(100 * 0.3 / 0.25)


def test_undefined_resamples_are_counted_in_the_protocol():
    from robustbench_lift.metrics import dropped_note, interval, undefined_resamples

    v = np.array([1.0] + [2.0] * 7 + [np.nan, np.inf, np.nan])
    assert undefined_resamples(v) == 3
    assert "CI from 7 of 10 bootstrap resamples (3 dropped" in dropped_note(v)
    value, lo, hi = interval(v)
    assert (value, lo, hi) == (1.0, 2.0, 2.0)
    assert dropped_note(np.array([1.0, 2.0, 3.0])) == ""
    mostly = np.array([1.0, 2.0] + [np.nan] * 4)
    assert "no CI: the statistic is undefined in 4 of 5" in dropped_note(mostly)


def test_bootstrap_ci_counts_undefined_resamples():
    from robustbench_lift.metrics import bootstrap_ci

    # undefined (inf) in every resample that misses the one non-zero `den` image: about (19/20)^20 = 36 % of them
    num = np.ones(20)
    den = np.zeros(20)
    den[:1] = 1.0
    with np.errstate(divide="ignore"):
        res = bootstrap_ci(lambda a, b: a / b, num, den, n_boot=200, seed=0)
    assert 0 < res.dropped < 200
    assert bootstrap_ci(lambda a: a, num, n_boot=50, seed=0).dropped == 0
