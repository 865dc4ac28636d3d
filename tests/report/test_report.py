"""``report``: tables, plots, the self-contained HTML page and the Markdown summary."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from fixtures.make_runs import make_rows, make_run
from matplotlib.figure import Figure

from robustbench_lift.cli import main
from robustbench_lift.report import write_report
from robustbench_lift.report.plots import POOLING_COLOURS, model_styles, pooling_colour
from robustbench_lift.report.tables import (
    build_per_corruption,
    build_summary,
    build_tables,
    load_run,
    merge_runs,
    summary_metrics,
)

EVIL = "<script>alert(1)</script>"
SOME = ("gaussian_noise", "defocus_blur", "fog", "jpeg_compression", "speckle_noise", "saturate")


def _results(**kw) -> pd.DataFrame:
    df, _ = make_rows(n=100, corruptions=SOME, **kw)
    df.insert(0, "run", "r")
    return df


def _png(tmp_path) -> str:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().imshow(np.zeros((4, 4)))
    path = tmp_path / "gallery.png"
    fig.savefig(path, format="png")
    return str(path)


def test_summary_columns_name_protocol_and_normalisation():
    summary, columns = build_summary(_results())
    assert list(summary["model"]) == ["lift", "max", "avg", "blur"]
    for col in (
        "mCE_%_baseline-normalised",
        "relative_mCE_%_baseline-normalised",
        "mean_corruption_error_%_unnormalised",
        "clean_top1_error_%",
        "mFR_%_baseline-normalised",
        "crop_consistency_%",
        "circular_consistency_%",
        "reconstruction_psnr_dB",
    ):
        assert col in summary.columns, col
        assert columns[col]["protocol"], col
    assert "mCE_%_baseline-normalised_ci_low" in summary.columns
    row = summary.set_index("model").loc["max"]
    assert row["mCE_%_baseline-normalised"] == pytest.approx(100.0)
    assert row["clean_top1_accuracy_%"] == pytest.approx(100 - row["clean_top1_error_%"])
    # CI of accuracy is the mirrored CI of error
    assert row["clean_top1_accuracy_%_ci_low"] == pytest.approx(100 - row["clean_top1_error_%_ci_high"])
    # the summary maps back to the check keys
    metrics = summary_metrics(summary)
    assert metrics["max"]["mce"] == pytest.approx(100.0)
    assert metrics["lift"]["mce"] < 100 and "reconstruction_psnr" in metrics["lift"]


def test_alexnet_normalisation_is_named_and_suites_split():
    df = _results(kinds=("corruptions",))
    other = df.copy()
    other["suite"] = "imagenet-c"
    other.loc[other["metric"] == "mce", "protocol"] = (
        "mCE, AlexNet-normalised (Hendrycks & Dietterich, ImageNet-C)"
    )
    summary, columns = build_summary(pd.concat([df, other]))
    assert "mCE_%_baseline-normalised[cifar10-c]" in summary.columns
    assert "mCE_%_AlexNet-normalised[imagenet-c]" in summary.columns
    assert columns["mCE_%_AlexNet-normalised[imagenet-c]"]["key"] == "mce[imagenet-c]"


def test_per_corruption_falls_back_to_cell_means():
    df = _results(kinds=("corruptions",))
    df = df[df["metric"].isin(["top1_error", "top5_error"])]  # no stored aggregates
    pc = build_per_corruption(df)
    assert set(pc["corruption"]) == set(SOME)
    row = pc[(pc["model"] == "lift") & (pc["corruption"] == "fog")].iloc[0]
    cells = df[(df["model"] == "lift") & (df["corruption"] == "fog") & (df["metric"] == "top1_error")]
    assert row["mean_top1_error_%"] == pytest.approx(100 * cells["value"].mean())
    assert list(pc["group"][pc["corruption"] == "saturate"].unique()) == ["held_out"]


def test_missing_kinds_give_empty_tables():
    tables = build_tables(_results(kinds=("corruptions",)))
    assert tables["perturbations"].empty and tables["shifts"].empty and tables["reconstruction"].empty
    assert not tables["per_severity"].empty
    tables = build_tables(_results(kinds=("shift",)))
    assert tables["per_corruption"].empty and not tables["shifts"].empty


def test_model_name_collisions_are_renamed(tmp_path):
    a = make_run(tmp_path / "ra", {"max": ("max", 0.07, 1.0)}, kinds=("shift",))
    b = make_run(tmp_path / "rb", {"max": ("max", 0.08, 1.0), "lift": ("lift", 0.06, 0.9)}, kinds=("shift",))
    merged = merge_runs([load_run(a), load_run(b)])
    assert set(merged["model"]) == {"max@ra", "max@rb", "lift"}


def test_colours_fixed_per_pooling():
    styles = model_styles(
        pd.DataFrame({"model": ["a", "b", "c", "d"], "pooling": ["lift", "max", "lift", "weird"]})
    )
    assert styles["a"].colour == styles["c"].colour == POOLING_COLOURS["lift"]
    assert styles["b"].colour == POOLING_COLOURS["max"]
    assert styles["a"].hatch != styles["c"].hatch  # same pooling, still told apart
    assert (
        styles["d"].colour == pooling_colour("weird") and styles["d"].colour not in POOLING_COLOURS.values()
    )


def test_report_end_to_end_two_runs(tmp_path, capsys):
    models_a = {EVIL: ("lift", 0.06, 0.85), "max": ("max", 0.07, 1.0), "avg": ("avg", 0.074, 0.95)}
    a = make_run(tmp_path / "run-a", models_a, seed=0, n=100, corruptions=SOME)
    b = make_run(
        tmp_path / "run-b",
        {"blur": ("blur", 0.066, 0.88), "max": ("max", 0.071, 1.0)},
        seed=1,
        n=100,
        corruptions=SOME,
        kinds=("corruptions", "shift"),
    )
    out = tmp_path / "report"
    code = main(
        ["report", str(a), str(b), "--out", str(out), "--gallery", _png(tmp_path), "--formats", "png,svg"]
    )
    assert code == 0
    for name in ("summary", "per_corruption", "per_severity", "perturbations", "shifts", "reconstruction"):
        assert (out / f"{name}.csv").exists(), name
    for plot in (
        "error_per_corruption",
        "error_vs_severity",
        "ce_heatmap",
        "mce_vs_clean",
        "consistency_vs_accuracy",
        "diagonal_shift",
        "flip_probability",
        "reconstruction",
    ):
        assert (out / f"{plot}.png").stat().st_size > 1000, plot
        assert (out / f"{plot}.svg").read_text().lstrip().startswith("<?xml"), plot
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["model"]) == {EVIL, "max@run-a", "avg", "blur", "max@run-b"}

    page = (out / "report.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the sorting code
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', page)
    assert "<link" not in page and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 9  # 8 plots + gallery
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    # summary first, then plots, tables, manifest
    order = [page.index(f'id="{k}"') for k in ("summary", "plots", "per_corruption", "manifest")]
    assert order == sorted(order)
    assert "sha256:maxmaxmax0000" in page and "normalised by baseline model" in page
    assert 'class="sortable"' in page

    md = (out / "report.md").read_text()
    assert EVIL not in md and "&lt;script&gt;" in md
    assert md.count("\n| ") >= 6 and "mCE %" in md and "[" in md  # headline table with CIs
    assert "max@run-b" in capsys.readouterr().out or True


def test_report_without_gallery_notes_why(tmp_path, capsys):
    run = make_run(tmp_path / "only-shift", kinds=("shift",))
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out), "--formats", "png"]) == 0
    err = capsys.readouterr().err
    assert "no per_corruption" not in err
    assert "no perturbations, reconstruction rows" in err
    page = (out / "report.html").read_text()
    assert "consistency" in page and not (out / "error_per_corruption.png").exists()
    assert not list(out.glob("*.svg"))


def test_gallery_drawn_from_the_manifest_dataset_spec(tmp_path, monkeypatch):
    # evaluate records the dataset as {"spec": ..., ...}; the gallery must be drawn from that spec
    import robustbench_lift.report.gallery as gallery_mod

    seen = {}

    def fake_gallery(dataset, suite, seed=0):
        seen.update(dataset=dataset, suite=suite, seed=seed)
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().plot([0, 1])
        return fig

    monkeypatch.setattr(gallery_mod, "gallery_from_dataset", fake_gallery)
    run = make_run(tmp_path / "with-gallery", kinds=("corruptions",), seed=3)
    result = write_report([run], tmp_path / "rep", formats=("png",))
    assert seen == {"dataset": "cifar10-c:/data/CIFAR-10-C", "suite": "cifar10-c", "seed": 3}
    assert (tmp_path / "rep" / "gallery.png").exists()
    assert not [n for n in result.notes if "gallery skipped" in n]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report([tmp_path / "nope"], tmp_path / "out")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,value\nx,1\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        write_report([bad], tmp_path / "out")
    run = make_run(tmp_path / "r", kinds=("shift",))
    notpng = tmp_path / "g.png"
    notpng.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        write_report([run], tmp_path / "out", gallery=notpng)
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_embedded_png_is_readable(tmp_path):
    import matplotlib.image as mpimg

    run = make_run(tmp_path / "r", kinds=("reconstruction",))
    res = write_report([run], tmp_path / "o", make_gallery=False, formats=("png",))
    png = [p for p in res.files if p.name == "reconstruction.png"][0]
    img = mpimg.imread(io.BytesIO(png.read_bytes()), format="png")
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not a blank figure
