import math

import numpy as np
import pytest

from corruptions.rng import numpy_generator
from robustbench_lift.metrics.bootstrap import Resampler, interval
from robustbench_lift.metrics.seeds import (
    IMAGES_ONLY,
    SEED_TABLE_COLUMNS,
    SEEDS_AND_IMAGES,
    group_difference,
    group_interval,
    seed_resample,
    seed_table,
)

N_IMAGES, N_BOOT = 2000, 400


def _mistakes(rate_by_model, seed=0, n=N_IMAGES):
    """Per-image 0/1 mistakes of several models on the same images: a shared difficulty, then each model's rate."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    out = {}
    for i, (name, rate) in enumerate(rate_by_model.items()):
        noise = np.random.default_rng([seed, i]).random(n)
        out[name] = ((0.5 * difficulty + 0.5 * noise) < rate).astype(float)
    return out


def _vectors(mistakes):
    names = list(mistakes)
    vec = Resampler(N_IMAGES, N_BOOT, 0, "suite").vectors(np.stack([mistakes[m] for m in names]))
    return {m: vec[i] for i, m in enumerate(names)}


def test_two_level_resample_matches_a_hand_computation():
    v = np.array(
        [[0.30, 0.31, 0.29, 0.33, 0.30], [0.40, 0.42, 0.38, 0.41, 0.39], [0.20, 0.22, 0.18, 0.21, 0.19]]
    )
    got = seed_resample(v, 5, "g")
    picks = numpy_generator(5, "seeds", "g", 3, 4).integers(0, 3, size=(4, 3))
    expected = [v[:, 0].mean()]
    for b in range(4):  # resample b: its own seeds, each seed's image-resample b
        expected.append(sum(v[s, b + 1] for s in picks[b]) / 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert got[0] == pytest.approx(0.3)


def test_seed_level_alone_gives_the_seed_bootstrap():
    # no image noise: two seeds worth 0 and 1 -> resampled means 0, 0.5, 1 with probability 1/4, 1/2, 1/4
    v = np.array([np.zeros(2001), np.ones(2001)])
    res = group_interval(v, seed=0, key="g")
    assert (res.estimate, res.low, res.high) == (0.5, 0.0, 1.0)
    share = np.mean(seed_resample(v, 0, "g")[1:] == 0.5)
    assert 0.45 < share < 0.55
    assert res.per_seed == (0.0, 1.0) and res.n_seeds == 2 and res.covers == SEEDS_AND_IMAGES


def test_one_seed_is_image_sampling_only():
    vec = _vectors(_mistakes({"a": 0.3}))["a"]
    res = group_interval(vec[None], seed=0, key="a")
    assert (res.estimate, res.low, res.high) == interval(vec)
    assert res.covers == IMAGES_ONLY and "one seed" in res.covers and res.n_seeds == 1


def test_seed_noise_is_not_significant_a_real_shift_is():
    seeds_a = {f"a{s}": 0.30 + d for s, d in enumerate([-0.02, 0.0, 0.02])}
    seeds_b = {f"b{s}": 0.30 + d for s, d in enumerate([0.015, -0.015, 0.005])}
    shifted = {f"c{s}": 0.42 + d for s, d in enumerate([-0.02, 0.01, 0.02])}
    vec = _vectors(_mistakes({**seeds_a, **seeds_b, **shifted}))
    a, b, c = (np.stack([vec[m] for m in g]) for g in (seeds_a, seeds_b, shifted))
    noise = group_difference(b, a, seed=0, key_a="b", key_b="a")
    assert not noise.significant and noise.low < 0 < noise.high
    shift = group_difference(c, a, seed=0, key_a="c", key_b="a")
    assert (
        shift.significant
        and shift.low > 0.05
        and shift.estimate == pytest.approx(c[:, 0].mean() - a[:, 0].mean())
    )
    # the seed level widens the interval against treating one model per group as the whole story
    one = group_difference(b[:1], a[:1], seed=0, key_a="b", key_b="a")
    assert one.covers == IMAGES_ONLY
    assert (noise.high - noise.low) > (one.high - one.low)


def test_a_single_seed_pair_calls_seed_noise_significant_seed_aware_does_not():
    # the failure the seed level exists for: two models that differ only in seed, but by a visible margin
    rates = {"a0": 0.28, "a1": 0.33, "a2": 0.30, "b0": 0.32, "b1": 0.28, "b2": 0.31}
    vec = _vectors(_mistakes(rates))
    a, b = np.stack([vec[f"a{i}"] for i in range(3)]), np.stack([vec[f"b{i}"] for i in range(3)])
    assert group_difference(
        b[:1], a[:1], seed=0, key_a="b", key_b="a"
    ).significant  # one model each: "significant"
    assert not group_difference(b, a, seed=0, key_a="b", key_b="a").significant


def test_deterministic_and_validated():
    v = np.random.default_rng(0).random((3, 51))
    assert group_interval(v, seed=1, key="g") == group_interval(v.copy(), seed=1, key="g")
    assert group_interval(v, seed=1, key="g") != group_interval(v, seed=2, key="g")
    with pytest.raises(ValueError, match="same image resamples"):
        group_difference(v, v[:, :10], seed=0, key_a="a", key_b="b")
    with pytest.raises(ValueError, match=r"shape \(seeds, 1 \+ B\)"):
        group_interval(np.zeros((2, 2, 2)), seed=0, key="g")
    no_boot = group_interval(v[:, :1], seed=0, key="g")
    assert math.isnan(no_boot.low) and not no_boot.significant


def test_seed_table_rows():
    rates = {"max-0": 0.3, "max-1": 0.31, "lift-0": 0.2, "lift-1": 0.21, "ext": 0.25}
    vec = _vectors(_mistakes(rates))
    models = {
        "max-0": {"group": "G-max", "seed": 0, "pooling": "max", "arch": "convnet"},
        "max-1": {"group": "G-max", "seed": 1, "pooling": "max", "arch": "convnet"},
        "lift-0": {"group": "G-lift", "seed": 0, "pooling": "lift", "arch": "convnet"},
        "lift-1": {"group": "G-lift", "seed": 1, "pooling": "lift", "arch": "convnet"},
        "ext": {"group": "ext", "seed": None, "pooling": "max", "arch": "resnet18"},
    }
    vectors = {(m, "s", "clean", 0, "top1_error"): (vec[m], "top-1 error", N_IMAGES) for m in rates}
    vectors[("lift-0", "s", "benchmark", 0, "mce")] = (vec["lift-0"], "mCE", N_IMAGES)  # lift-1 lacks it
    rows = seed_table(vectors, models, baseline_group="G-max", seed=0)
    assert all(tuple(r) == SEED_TABLE_COLUMNS for r in rows)
    own = {r["group"]: r for r in rows if not r["compared_to"]}
    assert set(own) == {"G-max", "G-lift", "ext"}  # no mce row: one of the lift seeds lacks it
    assert own["G-lift"]["n_seeds"] == 2 and own["G-lift"]["seeds"] == "0;1"
    assert own["G-lift"]["value"] == pytest.approx((vec["lift-0"][0] + vec["lift-1"][0]) / 2)
    assert own["ext"]["interval"] == IMAGES_ONLY and own["ext"]["seeds"] == ""
    diffs = {r["group"]: r for r in rows if r["compared_to"]}
    assert set(diffs) == {"G-lift", "ext"} and diffs["G-lift"]["compared_to"] == "G-max"
    assert diffs["G-lift"]["significant"] is True and diffs["G-lift"]["value"] < 0
    assert diffs["ext"]["interval"] == IMAGES_ONLY
