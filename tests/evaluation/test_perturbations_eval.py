import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lift.evaluation.kinds.perturbation import aggregate_perturbations, run_perturbation_cell
from robustbench_lift.metrics.perturbation import (
    compared_pairs,
    flip_probability,
    flip_rates,
    pair_top5_distance,
    top5_distance,
)
from robustbench_lift.schema import RESULT_COLUMNS


def test_compared_pairs():
    a, b = compared_pairs(5, noise=False, difficulty=2)
    assert a.tolist() == [0, 1, 2] and b.tolist() == [2, 3, 4]
    a, b = compared_pairs(4, noise=True, difficulty=3)  # stride does not apply to noise
    assert a.tolist() == [0, 0, 0] and b.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="difficulty must be one of"):
        compared_pairs(5, noise=False, difficulty=0)


def test_flip_probability_hand_computed():
    preds = np.array([[0, 0, 1, 1, 0], [2, 2, 2, 2, 2]])
    # consecutive, stride 1: (0,1) same, (1,2) flip, (2,3) same, (3,4) flip -> 2/4
    assert flip_rates(preds, noise=False, difficulty=1).tolist() == [0.5, 0.0]
    # stride 2: (0,2) flip, (1,3) flip, (2,4) flip -> 3/3
    assert flip_rates(preds, noise=False, difficulty=2).tolist() == [1.0, 0.0]
    # stride 3: (0,3) flip, (1,4) same -> 1/2
    assert flip_rates(preds, noise=False, difficulty=3).tolist() == [0.5, 0.0]
    # noise: every frame vs frame 0: 0,1,1,0 -> 2/4
    assert flip_rates(preds, noise=True).tolist() == [0.5, 0.0]
    assert flip_probability(preds, noise=False, difficulty=2) == 0.5


def test_top5_distance_hand_computed():
    a = np.array([0, 1, 2, 3, 4])
    assert pair_top5_distance(a, a) == 0
    # swapping the first two: |0 - 1| + |1 - 0| = 2
    assert pair_top5_distance(a, np.array([1, 0, 2, 3, 4])) == 2
    # reversed: 4 + 2 + 0 + 2 + 4 = 12
    assert pair_top5_distance(a, a[::-1]) == 12
    # all five leave the top 5: positions count as 5: 5 + 4 + 3 + 2 + 1 = 15
    assert pair_top5_distance(a, np.array([5, 6, 7, 8, 9])) == 15
    # class 0 drops out, the others move up one: |0-5| + 1 + 1 + 1 + 1 = 9
    assert pair_top5_distance(a, np.array([1, 2, 3, 4, 9])) == 9
    seq = np.stack([a, a, np.array([1, 0, 2, 3, 4])])[None]  # (1, 3, 5)
    # stride 1: d(f0,f1) = 0, d(f1,f2) = 2 -> mean 1
    assert top5_distance(seq, noise=False) == 1.0
    assert top5_distance(seq, noise=False, difficulty=2) == 2.0


def _arrays(preds: np.ndarray) -> dict[str, np.ndarray]:
    n, t = preds.shape
    top5 = np.stack([preds + k for k in range(5)], axis=-1)  # top-1 = preds, then shifted classes
    return {"top5": top5, "ids": np.arange(n), "labels": np.zeros(n, dtype=np.int64)}


def test_aggregate_fr_mfr_and_derived_strides():
    base = {
        ("translate", 1): _arrays(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]])),  # FP 1.0, 0.25 -> .625
        ("gaussian_noise", 1): _arrays(np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])),  # FP .5, 0 -> .25
    }
    model = {
        ("translate", 1): _arrays(np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])),  # FP .25, 0 -> .125
        ("gaussian_noise", 1): _arrays(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])),  # FP .25, 0 -> .125
    }
    rows = aggregate_perturbations(
        {"max": base, "lift": model},
        "max",
        models_info={"lift": {"pooling": "lift", "arch": "convnet"}},
        n_boot=50,
        difficulties=[1, 2],
    )
    assert all(tuple(r) == RESULT_COLUMNS for r in rows)

    def get(model_, corruption, d, metric):
        hit = [r for r in rows if (r["model"], r["corruption"], r["severity"], r["metric"]) ==
               (model_, corruption, d, metric)]  # fmt: skip
        assert len(hit) == 1, (model_, corruption, d, metric)
        return hit[0]

    assert get("lift", "translate", 1, "flip_probability")["value"] == pytest.approx(0.125)
    assert get("lift", "translate", 1, "fr")["value"] == pytest.approx(100 * 0.125 / 0.625)
    assert get("lift", "gaussian_noise", 1, "fr")["value"] == pytest.approx(50.0)
    assert get("max", "translate", 1, "fr")["value"] == pytest.approx(100.0)
    assert get("lift", "all", 1, "mfp")["value"] == pytest.approx(0.125)
    assert get("lift", "all", 1, "mfr")["value"] == pytest.approx((20.0 + 50.0) / 2)
    assert "2/10 test perturbations" in get("lift", "all", 1, "mfr")["protocol"]
    assert "baseline model 'max'" in get("lift", "all", 1, "mfr")["protocol"]
    assert get("lift", "translate", 1, "fr")["pooling"] == "lift"
    # translate at difficulty 2 comes from the difficulty-1 sequence with stride 2: (0,2),(1,3),(2,4) -> 2/3, 0
    assert get("lift", "translate", 2, "flip_probability")["value"] == pytest.approx(1 / 3)
    # no noise cell at difficulty 2: the aggregate is over translate only, and says so
    assert "1/10" in get("lift", "all", 2, "mfp")["protocol"]
    ci = get("lift", "translate", 1, "flip_probability")
    assert ci["ci_low"] <= ci["value"] <= ci["ci_high"]
    with pytest.raises(ValueError, match="baseline model 'avg' is not among"):
        aggregate_perturbations({"max": base}, "avg")


def test_mfr_leaves_out_perturbations_where_the_baseline_never_flips():
    base = {
        ("translate", 1): _arrays(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]])),  # FP .625
        ("rotate", 1): _arrays(np.zeros((2, 5), dtype=np.int64)),  # the baseline never flips: no FR
    }
    model = {
        ("translate", 1): _arrays(np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])),  # FP .125 -> FR 20
        ("rotate", 1): _arrays(np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])),  # FP (1 + 0) / 2 = .5
    }
    rows = aggregate_perturbations({"max": base, "lift": model}, "max", n_boot=20)
    by = {(r["model"], r["corruption"], r["metric"]): r for r in rows if r["severity"] == 1}
    assert ("lift", "rotate", "fr") not in by
    mfr = by[("lift", "all", "mfr")]
    assert mfr["value"] == pytest.approx(20.0)
    assert "excluding rotate" in mfr["protocol"]
    assert by[("lift", "all", "mfp")]["value"] == pytest.approx((0.125 + 0.5) / 2)


class _BrightnessClassifier(nn.Module):
    """Class = mean brightness in [0, 1] binned into 4 classes (logits peak at the nearest bin centre)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        centres = torch.tensor([0.125, 0.375, 0.625, 0.875])
        return -(m[:, None] - centres[None]).abs() + torch.arange(4) * 1e-4


def test_run_cell_on_pregenerated_sequences_hand_computed():
    levels = np.array([[10, 10, 240, 240, 10, 10, 10], [200, 200, 200, 200, 200, 200, 200]], dtype=np.uint8)
    seqs = np.broadcast_to(levels[:, :, None, None, None], (2, 7, 4, 4, 3)).copy()  # (N, T, H, W, C)
    arrays, rows = run_perturbation_cell(
        _BrightnessClassifier(), None, perturbation="translate", sequences=seqs, chunk_frames=3, n_boot=0
    )
    assert arrays["top5"].shape == (2, 7, 4)
    assert arrays["top5"][0, :, 0].tolist() == [0, 0, 3, 3, 0, 0, 0]
    fp = next(r for r in rows if r["metric"] == "flip_probability")
    assert fp["value"] == pytest.approx((2 / 6 + 0) / 2)
    assert fp["suite"] == "cifar10-p" and fp["corruption"] == "translate" and fp["severity"] == 1
    assert "pre-generated" in fp["protocol"]


def test_run_cell_on_the_fly_is_batch_independent():
    class DS:
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = (torch.rand(5, 3, 16, 16, generator=g) * 255).to(torch.uint8)

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return self.x[i], 0

    model = _BrightnessClassifier()
    a1, rows = run_perturbation_cell(
        model, DS(), perturbation="brightness", batch_size=2, chunk_frames=4, n_boot=0
    )
    a2, _ = run_perturbation_cell(
        model, DS(), perturbation="brightness", batch_size=5, chunk_frames=31, n_boot=0
    )
    np.testing.assert_array_equal(a1["top5"], a2["top5"])
    # brightness walks from -0.15 to +0.15: the brightness classifier flips at least once per sequence
    assert next(r for r in rows if r["metric"] == "flip_probability")["value"] > 0
    with pytest.raises(ValueError, match="unknown perturbation 'blur'"):
        run_perturbation_cell(model, DS(), perturbation="blur")


def test_evaluate_runs_perturbation_and_probe_suites(tmp_path):
    from robustbench_lift.data import ArrayDataset
    from robustbench_lift.evaluation import evaluate

    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        rng.integers(0, 4, 6),
        layout="NHW",
        class_names=["a", "b", "c", "d"],
        name="toy",
    )

    def net(pool: nn.Module) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            pool,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 4),
        )

    res = evaluate(
        [net(nn.MaxPool2d(2)), net(nn.AvgPool2d(2))],
        ds,
        ["cifar10-p", "shift", "reconstruction"],
        out=tmp_path / "run",
        names=["max", "avg"],
        corruptions=["translate", "gaussian_noise", "circular", "reconstruction"],
        limit=4,
        progress=False,
        baseline="max",
        n_boot=20,
    )
    df = res.results
    got = set(zip(df["suite"], df["corruption"], df["metric"]))
    assert ("cifar10-p", "all", "mfp") in got and ("cifar10-p", "translate", "flip_probability") in got
    assert ("shift", "circular", "consistency") in got and ("reconstruction", "lift", "psnr") in got
    lift = df[(df["model"] == "avg") & (df["corruption"] == "lift") & (df["metric"] == "psnr")]
    assert float(lift["value"].iloc[0]) > 100


class _Recorder(nn.Module):
    """A 224 px two-class 'classifier' that keeps every input it sees (its logits: from the mean brightness)."""

    default_cfg = {"input_size": (3, 224, 224)}

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.seen.append((x.detach() * 255).round().to(torch.uint8))
        m = x.mean(dim=(1, 2, 3))[:, None]
        return torch.cat([m, 0.5 - m], dim=1) * self.w


def _imagenet_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = {"n01440764": [(300, 260)], "n01443537": [(280, 340)]}  # (H, W): portrait and landscape originals
    for wnid, shapes in sizes.items():
        (root / wnid).mkdir(parents=True)
        for k, (h, w) in enumerate(shapes):
            yy, xx = np.mgrid[0:h, 0:w]
            img = np.stack([(xx * 255 // w), (yy * 255 // h), rng.integers(0, 256, (h, w))], -1).astype(
                np.uint8
            )
            Image.fromarray(img).save(root / wnid / f"img{k}.png")
    return root


def test_evaluate_imagenet_p_runs_the_published_order(tmp_path):
    # evaluate --suite imagenet-p on an ImageNet-style folder: Resize(256) of the original image, the translate
    # sequence on the whole 256 px image (black fill), CenterCrop(224) after
    from PIL import Image

    from robustbench_lift.data import open_dataset
    from robustbench_lift.evaluation import evaluate

    root = _imagenet_folder(tmp_path / "val")
    model = _Recorder()
    res = evaluate(
        [model],
        open_dataset(f"imagefolder:{root}"),
        ["imagenet-p"],
        out=tmp_path / "run",
        names=["rec"],
        corruptions=["translate"],
        progress=False,
        n_boot=0,
    )
    seen = torch.cat(model.seen)
    assert seen.shape[1:] == (3, 224, 224) and len(seen) >= 2 * 41
    for path in sorted(root.glob("*/*.png")):
        pil = Image.open(path).convert("RGB")
        w, h = pil.size
        size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        big = np.asarray(pil.resize(size, Image.BILINEAR))
        bh, bw = big.shape[:2]
        top, left = int(round((bh - 224) / 2.0)), int(round((bw - 224) / 2.0))
        for k in (0, 20, 33):
            shifted = np.zeros_like(big)
            s = k - 20
            if s >= 0:
                shifted[:, s:] = big[:, : bw - s]
            else:
                shifted[:, :s] = big[:, -s:]
            want = torch.from_numpy(shifted[top : top + 224, left : left + 224].copy()).permute(2, 0, 1)
            assert any(torch.equal(want, f) for f in seen), f"{path.name} frame {k}"
    df = res.results
    rows = df[(df["suite"] == "imagenet-p") & (df["metric"] == "flip_probability")]
    assert len(rows) and all("H.264" in p and "Resize(256)" in p for p in rows["protocol"])


def test_aggregates_leave_their_bootstrap_vectors_for_the_seed_table():
    rng = np.random.default_rng(0)
    arrays = {m: {("translate", 1): _arrays(rng.integers(0, 3, size=(12, 5)))} for m in ("max", "lift")}
    vectors = {}
    rows = aggregate_perturbations(arrays, "max", n_boot=40, difficulties=[1], vectors=vectors)
    by = {(r["model"], r["corruption"], r["metric"]): r for r in rows}
    for metric in ("mfp", "mt5d", "mfr", "mt5d_normalised"):
        vec, protocol, n = vectors[("lift", "cifar10-p", "all", 1, metric)]
        row = by[("lift", "all", metric)]
        assert vec.shape == (41,) and n == 12 and protocol == row["protocol"]
        assert vec[0] == pytest.approx(row["value"])
        # the same resamples as the row's CI
        lo, hi = np.quantile(vec[1:][np.isfinite(vec[1:])], [0.025, 0.975])
        assert (lo, hi) == pytest.approx((row["ci_low"], row["ci_high"]))
    assert not any(k[2] != "all" for k in vectors)
