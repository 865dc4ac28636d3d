"""Metric formulas against hand-computed values; bootstrap and paired-bootstrap behaviour."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robustbench_lift.metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    BENCHMARK_CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    _resampled_means,
    alexnet_table,
    bootstrap_ci,
    corruption_error,
    errors_table,
    mce,
    mean_corruption_error,
    normalise_by_alexnet,
    normalise_by_baseline,
    paired_bootstrap_diff,
    relative_ce,
    relative_mce,
    top1_error,
    top1_mistakes,
    topk_error,
)

# The "mean" column of the published AlexNet table (SPEC §5): an independent check of the transcribed rows.
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


def test_mce_relative_mce_and_unnormalised_mean() -> None:
    model = {"a": [0.2, 0.4], "b": [0.1, 0.1]}
    base = {"a": [0.4, 0.6], "b": [0.4, 0.4], "unused": [1.0, 1.0]}
    assert mce(model, base, corruptions=["a", "b"]) == pytest.approx((60.0 + 25.0) / 2)
    assert mean_corruption_error(model, corruptions=["a", "b"]) == pytest.approx(0.2)
    rel_model = {"a": [0.3, 0.5], "b": [0.2, 0.2]}
    rel_base = {"a": [0.5, 0.7], "b": [0.4, 0.6]}
    expected = (75.0 + 100 * 0.2 / 0.6) / 2
    assert relative_mce(rel_model, 0.1, rel_base, 0.2, corruptions=["a", "b"]) == pytest.approx(expected)
    # arrays give the same as mappings
    assert mce(errors_table(model, ["a", "b"]), errors_table(base, ["a", "b"])) == pytest.approx(42.5)


def test_mce_defaults_to_the_benchmark_15() -> None:
    with pytest.raises(ValueError, match=r"lacks corruption\(s\) \['shot_noise'"):
        mce({"gaussian_noise": [0.5]}, {"gaussian_noise": [0.5]})
    # held-out corruptions in a mapping do not enter mCE
    model = {c: [0.5] * 5 for c in BENCHMARK_CORRUPTIONS} | {c: [1.0] * 5 for c in HELD_OUT_CORRUPTIONS}
    base = {c: [0.25] * 5 for c in BENCHMARK_CORRUPTIONS} | {c: [0.1] * 5 for c in HELD_OUT_CORRUPTIONS}
    assert mce(model, base) == pytest.approx(200.0)
    assert mean_corruption_error(model) == pytest.approx(0.5)


def test_formulas_broadcast_over_trailing_axes() -> None:
    rng = np.random.default_rng(0)
    model = rng.uniform(0.2, 0.9, size=(3, 5, 4))
    base = rng.uniform(0.3, 0.9, size=(3, 5))
    vec = mce(model, base[..., None])
    one_by_one = [mce(model[..., j], base) for j in range(4)]
    np.testing.assert_allclose(vec, one_by_one)
    clean = rng.uniform(0.0, 0.1, size=4)
    vec_rel = relative_mce(model, clean, base[..., None], 0.05)
    np.testing.assert_allclose(vec_rel, [relative_mce(model[..., j], clean[j], base, 0.05) for j in range(4)])


# --------------------------------------------------------------------------------------- AlexNet normalisation


def test_alexnet_table_matches_published_means() -> None:
    assert tuple(ALEXNET_ERRORS) == BENCHMARK_CORRUPTIONS
    for name, mean in ALEXNET_MEANS.items():
        assert np.mean(ALEXNET_ERRORS[name]) == pytest.approx(mean, abs=1e-6), name
    assert alexnet_table().shape == (15, 5)
    np.testing.assert_allclose(alexnet_table(["fog"], severities=[2, 5]), [[0.76050, 0.94500]])
    with pytest.raises(ValueError, match="no AlexNet errors for \\['spatter'\\]"):
        alexnet_table(["spatter"])


def test_alexnet_itself_scores_100() -> None:
    result = normalise_by_alexnet(
        {c: list(v) for c, v in ALEXNET_ERRORS.items()}, clean_error=ALEXNET_CLEAN_ERROR
    )
    assert result.mce == pytest.approx(100.0) and result.relative_mce == pytest.approx(100.0)
    assert all(v == pytest.approx(100.0) for v in result.ce.values())
    assert result.baseline == "alexnet"
    assert result.mean_corruption_error == pytest.approx(np.mean(list(ALEXNET_MEANS.values())))


def test_alexnet_normalisation_resnet50_like_toy() -> None:
    # every cell at 76.7 % of AlexNet's error -> every CE and the mCE are 76.7 (the ResNet-50 reference point)
    errors = {c: [0.767 * e for e in v] for c, v in ALEXNET_ERRORS.items()}
    result = normalise_by_alexnet(errors, clean_error=0.2385)
    assert result.mce == pytest.approx(76.7)
    assert result.ce["fog"] == pytest.approx(76.7)
    assert result.mean_error["fog"] == pytest.approx(0.767 * 0.819324)
    # by hand for one corruption: brightness at 0.5 on every severity, clean error 0.3
    flat = {c: [0.5] * 5 for c in BENCHMARK_CORRUPTIONS}
    flat_result = normalise_by_alexnet(flat, clean_error=0.3)
    sum_brightness = 0.45140 + 0.48502 + 0.54048 + 0.62166 + 0.72440  # 2.82296
    assert flat_result.ce["brightness"] == pytest.approx(100 * 2.5 / sum_brightness)
    assert flat_result.relative_ce["brightness"] == pytest.approx(
        100 * 5 * 0.2 / (sum_brightness - 5 * 0.43478)
    )
    assert flat_result.mce == pytest.approx(np.mean([100 * 0.5 / m for m in ALEXNET_MEANS.values()]))


def test_alexnet_normalisation_on_a_subset_of_severities() -> None:
    result = normalise_by_alexnet({"fog": [0.5, 0.9]}, corruptions=["fog"], severities=[1, 5])
    assert result.mce == pytest.approx(100 * 1.4 / (0.67474 + 0.94500))
    assert result.relative_ce is None


def test_normalise_by_baseline_model() -> None:
    base = {"a": [0.4, 0.6], "b": [0.4, 0.4]}
    model = {"a": [0.2, 0.4], "b": [0.1, 0.1]}
    result = normalise_by_baseline(model, base, 0.05, 0.1, corruptions=["a", "b"], baseline="max")
    assert result.ce == {"a": pytest.approx(60.0), "b": pytest.approx(25.0)}
    assert result.mce == pytest.approx(42.5)
    assert result.relative_ce["a"] == pytest.approx(100 * (0.15 + 0.35) / (0.3 + 0.5))
    assert normalise_by_baseline(base, base, corruptions=["a", "b"]).mce == pytest.approx(100.0)
    with pytest.raises(ValueError, match="baseline's clean error"):
        normalise_by_baseline(model, base, 0.05, corruptions=["a", "b"])


def test_corruption_lists_agree_with_the_suite() -> None:
    suites = pytest.importorskip("corruptions.suites")
    suite = suites.get_suite("imagenet-c")
    assert tuple(suite.benchmark) == BENCHMARK_CORRUPTIONS
    assert tuple(suite.held_out) == HELD_OUT_CORRUPTIONS


# ------------------------------------------------------------------------------------------------- bootstrap


def test_resampling_matches_explicit_index_draws() -> None:
    # the count-matrix shortcut equals averaging explicitly resampled images
    x = np.random.default_rng(5).random((2, 7))
    means = _resampled_means([x], 7, 4, seed=11)[0]
    idx = np.random.default_rng(11).integers(0, 7, size=(4, 7))
    np.testing.assert_allclose(means, x[:, idx].mean(axis=-1))


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
    r = bootstrap_ci(lambda e: mce(e, table[..., None], corruptions=["fog", "snow"]), mistakes, n_boot=300)
    assert r.estimate == pytest.approx(mce(mistakes.mean(-1), table, corruptions=["fog", "snow"]))
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
        return mce(model, baseline)

    r = paired_bootstrap_diff(stat, a, b, common=[base], n_boot=200)
    expected = mce(a.mean(-1), base.mean(-1)) - mce(b.mean(-1), base.mean(-1))
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


def test_bootstrap_is_vectorised_fast_for_a_full_benchmark() -> None:
    # 75 cells x 10k images x 1000 resamples, the size of a CIFAR-10-C mCE interval
    rng = np.random.default_rng(7)
    table = alexnet_table()
    mistakes = rng.random((15, 5, 10_000), dtype=np.float32) < 0.5
    start = time.perf_counter()
    r = bootstrap_ci(lambda e: mce(e, table[..., None]), mistakes, n_boot=1000)
    elapsed = time.perf_counter() - start
    assert r.low < r.estimate < r.high
    assert elapsed < 20.0, f"bootstrap took {elapsed:.1f} s"


def test_relative_ce_is_undefined_when_the_baseline_is_not_degraded():
    # equal error sums leave float residue (~1e-17), not an exact zero: still undefined, never a ratio of 1e16
    base = [0.12 + 0.01, 0.13 - 0.01]
    with pytest.raises(ValueError, match="does not grow"):
        relative_ce([0.2, 0.3], 0.1, base, 0.125)
    with pytest.raises(ValueError, match="does not grow"):  # the baseline improves under the corruption
        relative_ce([0.2, 0.3], 0.1, [0.05, 0.05], 0.125)
    assert relative_ce([0.2, 0.3], 0.1, [0.2, 0.25], 0.1) == pytest.approx(100 * 0.3 / 0.25)
